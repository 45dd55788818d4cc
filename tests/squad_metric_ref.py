#!/usr/bin/env python3
"""Reference SQuAD v1.1 metric: the functions of the official evaluate-v1.1.py, used to
produce tests/fixtures/data/metric_cases.tsv that tests/test_squad_metric.c checks against.

  squad_metric_ref.py eval DATASET.json PREDICTIONS.json   -> {"exact_match": .., "f1": ..}
  squad_metric_ref.py cases IN.tsv                          -> EM and F1 per "pred<TAB>a|b|c" line
  squad_metric_ref.py make-fixture OUT.tsv                  -> writes the built-in cases
"""
import json
import re
import string
import sys
from collections import Counter


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    print('Unanswered question ' + qa['id'] + ' will receive score 0.', file=sys.stderr)
                    continue
                ground_truths = [a['text'] for a in qa['answers']]
                prediction = predictions[qa['id']]
                exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    return {'exact_match': 100.0 * exact_match / total, 'f1': 100.0 * f1 / total}


# prediction, answers: right, wrong, partial; punctuation, articles, spacing, case, repeats
CASES = [
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos"]),
    ("the Denver Broncos", ["Denver Broncos"]),
    ("Broncos", ["Denver Broncos"]),
    ("Carolina Panthers", ["Denver Broncos"]),
    ("DENVER broncos!!!", ["Denver Broncos"]),
    ("  Denver   Broncos  ", ["Denver Broncos"]),
    ("Denver\tBroncos\n", ["Denver Broncos"]),
    ("Santa Clara, California", ["Santa Clara, California", "Levi's Stadium"]),
    ("Levis Stadium", ["Levi's Stadium"]),
    ("Levi 's Stadium", ["Levi's Stadium"]),
    ("in 1843", ["1843"]),
    ("1,843", ["1843"]),
    ("1843 AD", ["1843", "the year 1843"]),
    ("a city", ["city"]),
    ("an apple a day", ["apple day"]),
    ("theater", ["the ater"]),
    ("The the THE", [""]),
    ("", ["something"]),
    ("", [""]),
    ("anthem", ["an them"]),
    ("the cat sat on the mat", ["cat sat on mat", "a cat"]),
    ("cat cat cat", ["cat"]),
    ("cat", ["cat cat cat"]),
    ("cat dog cat", ["dog cat dog"]),
    ("Mr. Smith", ["Mr Smith"]),
    ("U.S.A.", ["USA", "United States"]),
    ("United States of America", ["United States", "America"]),
    ("(copper)", ["copper"]),
    ("copper-tin", ["copper tin"]),
    ("copper - tin", ["copper tin"]),
    ("e=mc^2", ["emc2"]),
    ("$5 million", ["5 million dollars", "$5m"]),
    ("50%", ["50 percent", "fifty"]),
    ("a.m.", ["am"]),
    ("The Beatles' first album", ["first album of the Beatles"]),
    ("Super\u00a0Bowl 50", ["Super Bowl 50"]),
    ("the\u2014end", ["end"]),
    ("caf\u00e9 au lait", ["caf\u00e9"]),
    ("Zorvath Quelmar", ["Quelmar", "Zorvath"]),
    ("four score and seven years", ["seven years ago", "score"]),
    ("under_score a_b", ["under_score", "a b"]),
    ("Golden Gate Bridge in San Francisco", ["Golden Gate Bridge", "San Francisco Bay"]),
    ("A", ["a"]),
    ("An An", ["an", "An"]),
]


def fmt(x):
    return repr(float(x))


def make_fixture(path):
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('# prediction\tanswers (| separated)\texpected EM\texpected F1\tnormalized prediction -- made by tests/squad_metric_ref.py make-fixture\n')
        for pred, answers in CASES:
            assert '|' not in pred
            assert all('\t' not in a and '|' not in a and '\n' not in a for a in answers)
            em = metric_max_over_ground_truths(exact_match_score, pred, answers)
            f1 = metric_max_over_ground_truths(f1_score, pred, answers)
            esc = pred.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n')
            f.write('%s\t%s\t%d\t%s\t%s\n' % (esc, '|'.join(answers), int(em), fmt(f1), normalize_answer(pred)))


def main(argv):
    if len(argv) == 4 and argv[1] == 'eval':
        with open(argv[2], encoding='utf-8') as f:
            dataset = json.load(f)['data']
        with open(argv[3], encoding='utf-8') as f:
            predictions = json.load(f)
        print(json.dumps(evaluate(dataset, predictions)))
    elif len(argv) == 3 and argv[1] == 'cases':
        with open(argv[2], encoding='utf-8') as f:
            for line in f:
                line = line.rstrip('\n')
                if not line or line.startswith('#'):
                    continue
                pred, answers = line.split('\t')[:2]
                answers = answers.split('|')
                em = metric_max_over_ground_truths(exact_match_score, pred, answers)
                f1 = metric_max_over_ground_truths(f1_score, pred, answers)
                print('%d\t%s' % (int(em), fmt(f1)))
    elif len(argv) == 3 and argv[1] == 'make-fixture':
        make_fixture(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
