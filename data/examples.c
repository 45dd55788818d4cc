// Building token sequences for prompt completion and span QA from a squad_set.
// Contexts are encoded once; each token's byte range is recovered from its decoded length,
// so answer spans map to token positions with any byte-level tokenizer.
#include <string.h>
#include "examples.h"
#include "vec.h"

// index of the answer used as the label: the first one found in the context (-1: none)
static int label_answer(const squad_qa *q) {
    for (int j = 0; j < q->n_answers; j++)
        if (q->answer_start[j] >= 0) return j;
    return -1;
}

// encode text and fill byte offsets [beg[i], end[i]) of every token; -1 if decoding the
// tokens does not give back n bytes
static int encode_with_offsets(const tokenizer *tok, const char *s, size_t n, int_vec *ids,
                               int_vec *beg, int_vec *end) {
    ids->n = beg->n = end->n = 0;
    tok->encode(tok, s, n, ids);
    byte_vec tmp = {0};
    size_t off = 0;
    for (size_t i = 0; i < ids->n; i++) {
        tmp.n = 0;
        tok->decode(tok, ids->v[i], &tmp);
        int_vec_push(beg, (int)off);
        off += tmp.n;
        int_vec_push(end, (int)off);
    }
    byte_vec_free(&tmp);
    return off == n ? 0 : -1;
}

// token span [*ts, *te] (inclusive) covering bytes [a, b); 0 if it exists
static int byte_span_to_tokens(const int_vec *beg, const int_vec *end, int a, int b, int *ts, int *te) {
    int s = -1, e = -1;
    for (size_t i = 0; i < beg->n; i++) {
        if (s < 0 && end->v[i] > a) s = (int)i;
        if (beg->v[i] < b) e = (int)i;
    }
    if (s < 0 || e < s) return -1;
    *ts = s; *te = e;
    return 0;
}

static int count_str(const char *h, const char *needle) {
    int c = 0;
    for (const char *p = strstr(h, needle); p; p = strstr(p + 1, needle)) c++;
    return c;
}

int prompt_examples_build(const squad_set *s, const tokenizer *tok, const char *tmpl, int max_len,
                          int max_answer_tokens, prompt_examples *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!tmpl) tmpl = SWQ_DEFAULT_PROMPT;
    if (count_str(tmpl, "{context}") != 1 || count_str(tmpl, "{question}") != 1) {
        snprintf(err, errlen, "prompt template: must contain {context} and {question} exactly once: \"%.80s\"", tmpl);
        return -1;
    }
    if (max_len < 2) { snprintf(err, errlen, "prompt examples: max_len %d is too small", max_len); return -1; }
    // template pieces around the two slots
    const char *pc = strstr(tmpl, "{context}"), *pq = strstr(tmpl, "{question}");
    int ctx_first = pc < pq;
    const char *s1 = ctx_first ? pc : pq, *s2 = ctx_first ? pq : pc;
    size_t l1 = ctx_first ? 9 : 10, l2 = ctx_first ? 10 : 9;
    int_vec piece[3] = {{0}};
    tok->encode(tok, tmpl, (size_t)(s1 - tmpl), &piece[0]);
    tok->encode(tok, s1 + l1, (size_t)(s2 - s1 - l1), &piece[1]);
    tok->encode(tok, s2 + l2, strlen(s2 + l2), &piece[2]);
    int fixed_tmpl = (int)(piece[0].n + piece[1].n + piece[2].n);

    int_vec cids = {0}, cbeg = {0}, cend = {0}, qids = {0}, tgt = {0}, seq = {0};
    byte_vec ans = {0};
    int cap = 0, rc = 0;
    for (int i = 0; i < s->n; i++) {
        const squad_qa *q = &s->qa[i];
        int aj = label_answer(q);
        if (q->n_answers == 0) { out->n_skipped++; continue; }
        const char *atext = q->answers[aj < 0 ? 0 : aj];
        ans.n = 0;
        byte_vec_append(&ans, " ", 1);
        byte_vec_puts(&ans, atext);
        tgt.n = 0;
        tok->encode(tok, ans.v, ans.n, &tgt);
        if (max_answer_tokens > 0 && (int)tgt.n > max_answer_tokens) { out->n_skipped++; continue; }
        int_vec_push(&tgt, tok->eot);
        qids.n = 0;
        tok->encode(tok, q->question, strlen(q->question), &qids);
        int budget = max_len - fixed_tmpl - (int)qids.n - (int)tgt.n;
        if (budget < 1) { out->n_skipped++; continue; }
        size_t clen = strlen(q->context);
        if (encode_with_offsets(tok, q->context, clen, &cids, &cbeg, &cend)) {
            snprintf(err, errlen, "prompt examples: tokenizer '%s' does not decode back to the context of question %s",
                     tok->kind, q->id);
            rc = -1; break;
        }
        // context window [w0, w1): drop from the end, or slide to keep the answer inside
        int nc = (int)cids.n, w0 = 0, w1 = nc;
        if (nc > budget) {
            w1 = budget;
            int ts, te;
            if (aj >= 0 && byte_span_to_tokens(&cbeg, &cend, q->answer_start[aj],
                                               q->answer_start[aj] + (int)strlen(atext), &ts, &te) == 0 && te >= budget) {
                int alen = te - ts + 1;
                w0 = alen >= budget ? ts : ts - (budget - alen) / 2;
                if (w0 + budget > nc) w0 = nc - budget;
                if (w0 < 0) w0 = 0;
                w1 = w0 + budget;
            }
        }
        seq.n = 0;
        const int_vec *slot1 = &qids, *slot2 = &qids;
        int_vec win = { cids.v + w0, (size_t)(w1 - w0), 0 };
        if (ctx_first) slot1 = &win; else slot2 = &win;
        const int_vec *parts[5] = { &piece[0], slot1, &piece[1], slot2, &piece[2] };
        for (int k = 0; k < 5; k++)
            for (size_t t = 0; t < parts[k]->n; t++) int_vec_push(&seq, parts[k]->v[t]);
        int prompt_len = (int)seq.n;
        for (size_t t = 0; t < tgt.n; t++) int_vec_push(&seq, tgt.v[t]);
        if (out->n == cap) { cap = cap ? 2 * cap : 256; out->ex = (prompt_example *)swq_xrealloc(out->ex, (size_t)cap * sizeof(prompt_example)); }
        prompt_example *e = &out->ex[out->n++];
        e->n = (int)seq.n;
        e->ids = (int *)swq_xrealloc(NULL, seq.n * sizeof(int));
        memcpy(e->ids, seq.v, seq.n * sizeof(int));
        e->prompt_len = prompt_len;
        e->qa = i;
    }
    for (int k = 0; k < 3; k++) int_vec_free(&piece[k]);
    int_vec_free(&cids); int_vec_free(&cbeg); int_vec_free(&cend); int_vec_free(&qids);
    int_vec_free(&tgt); int_vec_free(&seq); byte_vec_free(&ans);
    if (rc == 0 && out->n == 0 && s->n > 0) {
        snprintf(err, errlen, "prompt examples: none of %d questions fits max_len %d with answers of at most %d tokens",
                 s->n, max_len, max_answer_tokens);
        rc = -1;
    }
    if (rc) prompt_examples_free(out);
    return rc;
}

int span_examples_build(const squad_set *s, const tokenizer *tok, int max_len, int stride,
                        span_examples *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (max_len < 2) { snprintf(err, errlen, "span examples: max_len %d is too small", max_len); return -1; }
    if (stride < 0) { snprintf(err, errlen, "span examples: stride %d is negative", stride); return -1; }
    int_vec cids = {0}, cbeg = {0}, cend = {0}, qids = {0};
    int cap = 0, rc = 0;
    for (int i = 0; i < s->n; i++) {
        const squad_qa *q = &s->qa[i];
        qids.n = 0;
        tok->encode(tok, q->question, strlen(q->question), &qids);
        int nq = (int)qids.n, room = max_len - nq;
        if (room < 1) { out->n_skipped++; continue; }
        if (encode_with_offsets(tok, q->context, strlen(q->context), &cids, &cbeg, &cend)) {
            snprintf(err, errlen, "span examples: tokenizer '%s' does not decode back to the context of question %s",
                     tok->kind, q->id);
            rc = -1; break;
        }
        int aj = label_answer(q), ts = -1, te = -1;
        if (aj < 0 || byte_span_to_tokens(&cbeg, &cend, q->answer_start[aj],
                                          q->answer_start[aj] + (int)strlen(q->answers[aj]), &ts, &te))
            ts = te = -1;
        int overlap = stride < room / 2 ? stride : room / 2;
        int step = room - overlap, nc = (int)cids.n;
        for (int w0 = 0;; w0 += step) {
            int w1 = w0 + room < nc ? w0 + room : nc;
            int n = nq + (w1 - w0);
            if (out->n == cap) { cap = cap ? 2 * cap : 256; out->ex = (span_example *)swq_xrealloc(out->ex, (size_t)cap * sizeof(span_example)); }
            span_example *e = &out->ex[out->n++];
            e->n = n;
            e->ids = (int *)swq_xrealloc(NULL, (size_t)n * sizeof(int));
            e->tok_begin = (int *)swq_xrealloc(NULL, (size_t)n * sizeof(int));
            e->tok_end = (int *)swq_xrealloc(NULL, (size_t)n * sizeof(int));
            for (int t = 0; t < nq; t++) { e->ids[t] = qids.v[t]; e->tok_begin[t] = e->tok_end[t] = -1; }
            for (int t = w0; t < w1; t++) {
                e->ids[nq + t - w0] = cids.v[t];
                e->tok_begin[nq + t - w0] = cbeg.v[t];
                e->tok_end[nq + t - w0] = cend.v[t];
            }
            e->ctx_first = nq;
            e->qa = i;
            if (ts >= w0 && te < w1) { e->start = nq + ts - w0; e->end = nq + te - w0; }
            else e->start = e->end = 0;
            if (w1 >= nc) break;
        }
    }
    int_vec_free(&cids); int_vec_free(&cbeg); int_vec_free(&cend); int_vec_free(&qids);
    if (rc) span_examples_free(out);
    return rc;
}

void prompt_examples_free(prompt_examples *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) free(e->ex[i].ids);
    free(e->ex);
    e->ex = NULL; e->n = 0;
}

void span_examples_free(span_examples *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) { free(e->ex[i].ids); free(e->ex[i].tok_begin); free(e->ex[i].tok_end); }
    free(e->ex);
    e->ex = NULL; e->n = 0;
}
