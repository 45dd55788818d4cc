#!/usr/bin/env python3
"""Parity references for swq's Hugging Face GPT-2 import/export (runs where torch and
transformers are installed; the references are computed on the CPU in float64).

  hf_parity.py make OUT [--shape small|124M] [--grads/--no-grads]
      Random-init GPT-2 (weights perturbed so that biases and LayerNorms are not trivial),
      saved as two HF directories OUT/lm (GPT2LMHeadModel) and OUT/qa
      (GPT2ForQuestionAnswering, same transformer weights plus a QA head), and for fixed
      inputs: OUT/ref.json (tokens, LM loss rows/targets, QA labels, losses),
      OUT/ref.safetensors (LM logits [B*T, V], QA start/end logits [B, T]) and
      OUT/grads_lm.safetensors, OUT/grads_qa.safetensors (gradients of the losses wrt every
      parameter, HF names and layouts).
      LM loss: mean cross-entropy over the "answer" positions (row b*T+t predicts token
      t+1 of sample b), i.e. transformers' loss with labels = -100 except on the answers.
      QA loss: (CE_start + CE_end) / 2, batch mean, as GPT2ForQuestionAnswering.
  hf_parity.py check-export DIR
      For every sub-directory of DIR holding swq_ref.safetensors (written by
      `test_hf_parity --export`): load it with from_pretrained and compare transformers'
      logits (float64) with swq's.
"""
import argparse
import copy
import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2ForQuestionAnswering, GPT2LMHeadModel

SHAPES = {
    "small": dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=300, B=2, T=24),
    "124M": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257, B=2, T=64),
}


def eager(model):
    # the same math as sdpa; eager is the plain reference
    try:
        model.set_attn_implementation("eager")
    except Exception:
        try:
            model.config._attn_implementation = "eager"
        except Exception:
            pass
    return model


def make_config(sh):
    V = sh["vocab_size"]
    eot = 50256 if V > 50256 else V - 1
    return GPT2Config(n_layer=sh["n_layer"], n_head=sh["n_head"], n_embd=sh["n_embd"],
                      n_positions=sh["n_positions"], vocab_size=V, bos_token_id=eot, eos_token_id=eot)


def perturb(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.1 if ("ln_" in name and name.endswith("weight")) else 0.02
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)


def save_dir(model, path):
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    st = os.path.join(path, "model.safetensors")
    if not os.path.exists(st):   # older transformers without safetensors default
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("attn.bias")
              and not k.endswith("attn.masked_bias") and k != "lm_head.weight"}
        save_file(sd, st, metadata={"format": "pt"})
    for f in os.listdir(path):
        if f.endswith(".bin") or f.endswith(".index.json"):
            raise SystemExit(f"{path}: unexpected file {f} (expected a single model.safetensors)")


def grads_of(model):
    return {n: p.grad.detach().to(torch.float32).contiguous() for n, p in model.named_parameters()
            if p.grad is not None}


def cmd_make(args):
    sh = SHAPES[args.shape]
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(20240601)
    cfg = make_config(sh)
    lm = eager(GPT2LMHeadModel(cfg)).float()
    perturb(lm, gen)
    assert lm.lm_head.weight.data_ptr() == lm.transformer.wte.weight.data_ptr(), "LM head not tied"
    qa = eager(GPT2ForQuestionAnswering(copy.deepcopy(cfg))).float()
    qa.transformer.load_state_dict(lm.transformer.state_dict())
    with torch.no_grad():
        qa.qa_outputs.weight.copy_(torch.randn(qa.qa_outputs.weight.shape, generator=gen) * 0.05)
        qa.qa_outputs.bias.copy_(torch.randn(qa.qa_outputs.bias.shape, generator=gen) * 0.05)
    out = args.out
    save_dir(lm, os.path.join(out, "lm"))
    save_dir(qa, os.path.join(out, "qa"))

    B, T, V = sh["B"], sh["T"], sh["vocab_size"]
    tokens = torch.randint(0, V, (B, T), generator=gen)
    rows, targets = [], []
    labels = torch.full((B, T), -100, dtype=torch.long)
    spans = [(T // 3, T - 2), (T // 2, T - 1)]   # answer positions t predict token t+1
    for b, (a0, a1) in enumerate(spans):
        for t in range(a0, a1):
            rows.append(b * T + t)
            targets.append(int(tokens[b, t + 1]))
            labels[b, t + 1] = tokens[b, t + 1]
    start = [3, T // 2]
    end = [7, T // 2]

    # float64 references from the float32 weights
    lmd = eager(copy.deepcopy(lm).double()).eval()
    assert lmd.lm_head.weight.data_ptr() == lmd.transformer.wte.weight.data_ptr(), "LM head not tied (float64)"
    o = lmd(input_ids=tokens, labels=labels)
    logits = o.logits
    loss = F.cross_entropy(logits.reshape(B * T, V)[torch.tensor(rows)], torch.tensor(targets))
    lm_loss_hf = float(o.loss.detach())
    assert abs(lm_loss_hf - float(loss.detach())) < 1e-5 * abs(float(loss.detach())), (lm_loss_hf, float(loss.detach()))
    lmd.zero_grad()
    loss.backward()
    grads_lm = grads_of(lmd)

    qad = eager(copy.deepcopy(qa).double()).eval()
    sp, ep = torch.tensor(start), torch.tensor(end)
    q = qad(input_ids=tokens, start_positions=sp, end_positions=ep)
    qloss = (F.cross_entropy(q.start_logits, sp) + F.cross_entropy(q.end_logits, ep)) / 2
    qa_loss_hf = float(q.loss.detach())
    assert abs(qa_loss_hf - float(qloss.detach())) < 1e-5 * abs(float(qloss.detach())), (qa_loss_hf, float(qloss.detach()))
    qad.zero_grad()
    qloss.backward()
    grads_qa = grads_of(qad)

    ref = {
        "B": B, "T": T, "shape": args.shape,
        "tokens": [int(x) for x in tokens.reshape(-1)],
        "rows": rows, "targets": targets, "start": start, "end": end,
        "lm_loss": float(loss.detach()), "qa_loss": float(qloss.detach()),
        "lm_loss_transformers": lm_loss_hf, "qa_loss_transformers": qa_loss_hf,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
    save_file({"logits": logits.detach().reshape(B * T, V).float().contiguous(),
               "qa_start": q.start_logits.detach().float().contiguous(),
               "qa_end": q.end_logits.detach().float().contiguous()},
              os.path.join(out, "ref.safetensors"), metadata={"format": "pt"})
    if args.grads:
        save_file(grads_lm, os.path.join(out, "grads_lm.safetensors"), metadata={"format": "pt"})
        save_file(grads_qa, os.path.join(out, "grads_qa.safetensors"), metadata={"format": "pt"})
    print(f"{args.shape}: wrote {out} (lm_loss {float(loss.detach()):.10f}, qa_loss {float(qloss.detach()):.10f}, "
          f"torch {torch.__version__}, transformers {transformers.__version__})")


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def cmd_check_export(args):
    worst = 0.0
    n = 0
    for sub in sorted(os.listdir(args.dir)):
        d = os.path.join(args.dir, sub)
        refp = os.path.join(d, "swq_ref.safetensors")
        if not os.path.exists(refp):
            continue
        ref = load_file(refp)
        with open(os.path.join(d, "swq_tokens.json")) as f:
            tk = json.load(f)
        tokens = torch.tensor(tk["tokens"]).reshape(tk["B"], tk["T"])
        with open(os.path.join(d, "config.json")) as f:
            arch = json.load(f)["architectures"][0]
        cls = GPT2ForQuestionAnswering if arch == "GPT2ForQuestionAnswering" else GPT2LMHeadModel
        model = eager(cls.from_pretrained(d)).double().eval()
        note = ""
        with torch.no_grad():
            out = model(input_ids=tokens)
            if cls is GPT2LMHeadModel:
                tied = model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
                note = f" (lm_head {'tied' if tied else 'untied'})"
                e = rel(out.logits.reshape(-1, out.logits.shape[-1]), ref["logits"].double())
            else:
                e = max(rel(out.start_logits, ref["qa_start"].double()), rel(out.end_logits, ref["qa_end"].double()))
        print(f"export {sub}: {arch}{note}: max |transformers - swq| / max |swq| = {e:.3e}")
        worst = max(worst, e)
        n += 1
    ok = n > 0 and worst < args.tol
    print(f"check-export: {n} directories, worst {worst:.3e}, tolerance {args.tol:g}: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    m = sp.add_parser("make")
    m.add_argument("out")
    m.add_argument("--shape", choices=sorted(SHAPES), default="small")
    m.add_argument("--grads", action=argparse.BooleanOptionalAction, default=True)
    c = sp.add_parser("check-export")
    c.add_argument("dir")
    c.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.cmd == "make":
        cmd_make(args)
        return 0
    return cmd_check_export(args)


if __name__ == "__main__":
    sys.exit(main())
