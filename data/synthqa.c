// Deterministic generator of a synthetic SQuAD-layout data set: short articles of templated
// facts about invented cities and people, one question per fact, answers are context spans.
// Values come from small pools so that a tiny model can learn to copy the right span.
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <stdint.h>
#include "squad.h"
#include "vec.h"

#define MAX_CONTEXT 130     // paragraphs stop growing at this many bytes (after 3 facts)

typedef struct { uint64_t s; } rng;
static uint64_t rng_next(rng *r) {      // splitmix64
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rng_below(rng *r, int n) { return (int)(rng_next(r) % (uint64_t)n); }
#define PICK(r, arr) (arr[rng_below(r, (int)(sizeof(arr) / sizeof(arr[0])))])

static const char *SYLL[] = {
    "ba", "bel", "bra", "da", "dor", "el", "fa", "fen", "ga", "gor", "ha", "ka", "kel", "la",
    "lin", "ma", "mar", "na", "nor", "o", "pa", "quel", "ra", "ren", "sa", "sel", "ta", "tor",
    "u", "va", "vath", "wen", "ya", "zor", "zi", "mo", "lu", "ri", "ve", "thu", "brask", "til",
};
static const char *COUNTRIES[] = {
    "Quelmar", "Dravonia", "Estrelia", "Valdor", "Kestria", "Morvane", "Tulsia", "Brenmark",
    "Orlenia", "Savaria", "Zentha", "Lorvik", "Hadria", "Pellonia", "Carvast", "Ibrenia",
    "Fenmoor", "Gallundia", "Rhovan", "Velmira", "Tarsk", "Ostrelle", "Marwin", "Solvaria",
    "Keldor", "Aurenne", "Bexley", "Nimora", "Palvast", "Yrrhen",
};
static const char *EXPORTS[] = {
    "copper", "salt", "wool", "timber", "silk", "wine", "coffee", "tin", "iron", "cotton",
    "glass", "paper", "rice", "tea", "olives", "marble", "leather", "honey", "cheese", "tobacco",
};
static const char *RIVERS[] = {
    "Velna", "Orsk", "Tamber", "Lune", "Brisa", "Kolva", "Marre", "Senn", "Duvel", "Ilka",
    "Raska", "Oden", "Pell", "Yara", "Sorn", "Hessa", "Tova", "Grenn", "Almo", "Wexa",
};
static const char *SPORTS[] = {
    "football", "rugby", "tennis", "rowing", "cricket", "hockey", "chess", "archery", "boxing",
    "cycling", "sailing", "wrestling",
};
static const char *MONTHS[] = {
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
};
static const char *JOBS[] = {
    "baker", "painter", "doctor", "sailor", "teacher", "farmer", "lawyer", "miner", "poet",
    "writer", "singer", "pilot", "judge", "nurse", "tailor", "potter", "weaver", "builder",
    "banker", "chemist",
};
static const char *INSTRUMENTS[] = {
    "flute", "violin", "harp", "drums", "piano", "cello", "lute", "horn", "organ", "guitar",
};
static const char *COLORS[] = {
    "red", "blue", "green", "yellow", "purple", "orange", "black", "white", "gray", "brown",
};

enum { V_COUNTRY, V_YEAR, V_BIRTH, V_DEATH, V_EXPORT, V_PERSON, V_RIVER, V_POP, V_SPORT,
       V_MONTH, V_JOB, V_INSTRUMENT, V_COLOR };

// Sentence placeholders: {S} subject (name or pronoun), {P} possessive, {V} value.
// Questions: {N} the entity's name.
typedef struct { int value; const char *sentence; const char *q[3]; } relation;

#define N_REL 8
static const relation CITY[N_REL] = {
    { V_COUNTRY, "{S} is a city in {V}.", { "In which country is {N}?", "Where is {N} located?", "{N} is a city in which country?" } },
    { V_YEAR, "{S} was founded in {V}.", { "When was {N} founded?", "In what year was {N} founded?", "What year was {N} founded in?" } },
    { V_EXPORT, "{P} main export is {V}.", { "What is the main export of {N}?", "What does {N} mainly export?", "What is {N}'s main export?" } },
    { V_PERSON, "{P} mayor is {V}.", { "Who is the mayor of {N}?", "Who is {N}'s mayor?", "Who serves as mayor of {N}?" } },
    { V_RIVER, "{S} lies on the {V} River.", { "On which river does {N} lie?", "What river flows through {N}?", "Which river is {N} on?" } },
    { V_POP, "{S} has {V} people.", { "How many people live in {N}?", "What is the population of {N}?", "How large is the population of {N}?" } },
    { V_SPORT, "{P} favorite sport is {V}.", { "What is the favorite sport in {N}?", "Which sport is most popular in {N}?", "What sport do people in {N} love?" } },
    { V_MONTH, "{P} festival is held in {V}.", { "In which month is the festival of {N} held?", "When is the festival of {N} held?", "In what month does {N} hold its festival?" } },
};
static const relation PERSON[N_REL] = {
    { V_BIRTH, "{S} was born in {V}.", { "When was {N} born?", "In what year was {N} born?", "What year was {N} born in?" } },
    { V_COUNTRY, "{S} grew up in {V}.", { "Where did {N} grow up?", "In which country did {N} grow up?", "What country did {N} grow up in?" } },
    { V_JOB, "{S} worked as a {V}.", { "What did {N} work as?", "What was the job of {N}?", "What was {N}'s profession?" } },
    { V_INSTRUMENT, "{S} played the {V}.", { "Which instrument did {N} play?", "What instrument did {N} play?", "What did {N} play?" } },
    { V_PERSON, "{S} married {V}.", { "Whom did {N} marry?", "Who was the spouse of {N}?", "Who did {N} marry?" } },
    { V_DEATH, "{S} died in {V}.", { "When did {N} die?", "In what year did {N} die?", "What year did {N} die in?" } },
    { V_COLOR, "{P} favorite color was {V}.", { "What was the favorite color of {N}?", "What was {N}'s favorite color?", "Which color did {N} like best?" } },
    { V_PERSON, "{P} teacher was {V}.", { "Who taught {N}?", "Who was the teacher of {N}?", "Who was {N}'s teacher?" } },
};

static void make_word(rng *r, int nsyl, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < nsyl; i++) {
        const char *s = PICK(r, SYLL);
        if (strlen(out) + strlen(s) + 1 > cap) break;
        strcat(out, s);
    }
    if (out[0] >= 'a' && out[0] <= 'z') out[0] = (char)(out[0] - 'a' + 'A');
}

static void make_person(rng *r, char *out, size_t cap) {
    char first[32], last[32];
    make_word(r, 2, first, sizeof first);
    make_word(r, 1 + (rng_below(r, 4) == 0), last, sizeof last);
    snprintf(out, cap, "%s %s", first, last);
}

// entity-name set (open addressing) so that titles and questions are unambiguous
typedef struct { char **slot; size_t cap; } name_set;
static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
static int name_set_add(name_set *ns, const char *s) {   // 1 if added, 0 if present
    size_t i = str_hash(s) & (ns->cap - 1);
    while (ns->slot[i]) {
        if (strcmp(ns->slot[i], s) == 0) return 0;
        i = (i + 1) & (ns->cap - 1);
    }
    size_t n = strlen(s) + 1;
    ns->slot[i] = (char *)swq_xrealloc(NULL, n);
    memcpy(ns->slot[i], s, n);
    return 1;
}

static void json_str(byte_vec *b, const char *s) {
    byte_vec_append(b, "\"", 1);
    for (; *s; s++) {
        char e[8];
        if (*s == '"' || *s == '\\') { e[0] = '\\'; e[1] = *s; byte_vec_append(b, e, 2); }
        else if ((unsigned char)*s < 0x20) { snprintf(e, sizeof e, "\\u%04x", (unsigned char)*s); byte_vec_puts(b, e); }
        else byte_vec_append(b, s, 1);
    }
    byte_vec_append(b, "\"", 1);
}

// replace {K} placeholders; returns the byte offset where {V} was placed (or -1)
static int expand(const char *tmpl, const char *subj, const char *poss, const char *val,
                  const char *name, char *out, size_t cap) {
    size_t n = 0;
    int vpos = -1;
    out[0] = 0;
    for (const char *p = tmpl; *p;) {
        const char *rep = NULL;
        if (p[0] == '{' && p[1] && p[2] == '}') {
            switch (p[1]) {
            case 'S': rep = subj; break;
            case 'P': rep = poss; break;
            case 'V': rep = val; vpos = (int)n; break;
            case 'N': rep = name; break;
            }
        }
        if (rep) {
            size_t l = strlen(rep);
            if (n + l + 1 > cap) break;
            memcpy(out + n, rep, l); n += l; p += 3;
        } else {
            if (n + 2 > cap) break;
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return vpos;
}

typedef struct { char text[256]; char question[256]; char answer[64]; int vpos; } fact;

int synthqa_write(const char *path, int n_articles, uint64_t seed, char *err, size_t errlen) {
    return synthqa_write_facts(path, n_articles, seed, 6, err, errlen);
}

int synthqa_write_facts(const char *path, int n_articles, uint64_t seed, int max_facts, char *err, size_t errlen) {
    if (max_facts < 1 || max_facts > 6) { snprintf(err, errlen, "%s: facts per paragraph must be 1..6, got %d", path, max_facts); return -1; }
    int min_facts = max_facts < 3 ? max_facts : 3;
    if (n_articles < 1) { snprintf(err, errlen, "%s: synthetic data needs at least 1 article, got %d", path, n_articles); return -1; }
    rng r = { seed ^ 0x5157A0D1C0FFEEull };
    name_set ns = { NULL, 64 };
    while (ns.cap < 4 * (size_t)n_articles) ns.cap *= 2;
    ns.slot = (char **)calloc(ns.cap, sizeof(char *));
    if (!ns.slot) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    byte_vec b = {0};
    byte_vec_puts(&b, "{\"version\":\"1.1\",\"data\":[");
    uint64_t qid = 0, id_salt = rng_next(&r);
    for (int a = 0; a < n_articles; a++) {
        int is_person = rng_below(&r, 2);
        char name[64];
        do {
            if (is_person) make_person(&r, name, sizeof name);
            else make_word(&r, 2 + rng_below(&r, 2), name, sizeof name);
        } while (!name_set_add(&ns, name));
        const relation *rel = is_person ? PERSON : CITY;
        int female = rng_below(&r, 2);
        const char *pron = is_person ? (female ? "She" : "He") : "It";
        const char *ppos = is_person ? (female ? "Her" : "His") : "Its";
        char named_poss[80];
        snprintf(named_poss, sizeof named_poss, "%s's", name);
        // one value per relation (fixed for the article)
        char val[N_REL][64];
        int birth = 1500 + rng_below(&r, 400);
        for (int k = 0; k < N_REL; k++) {
            switch (rel[k].value) {
            case V_COUNTRY: snprintf(val[k], 64, "%s", PICK(&r, COUNTRIES)); break;
            case V_YEAR: snprintf(val[k], 64, "%d", 1100 + rng_below(&r, 900)); break;
            case V_BIRTH: snprintf(val[k], 64, "%d", birth); break;
            case V_DEATH: snprintf(val[k], 64, "%d", birth + 25 + rng_below(&r, 70)); break;
            case V_EXPORT: snprintf(val[k], 64, "%s", PICK(&r, EXPORTS)); break;
            case V_PERSON: make_person(&r, val[k], 64); break;
            case V_RIVER: snprintf(val[k], 64, "%s", PICK(&r, RIVERS)); break;
            case V_POP: snprintf(val[k], 64, "%d thousand", 2 + rng_below(&r, 98)); break;
            case V_SPORT: snprintf(val[k], 64, "%s", PICK(&r, SPORTS)); break;
            case V_MONTH: snprintf(val[k], 64, "%s", PICK(&r, MONTHS)); break;
            case V_JOB: snprintf(val[k], 64, "%s", PICK(&r, JOBS)); break;
            case V_INSTRUMENT: snprintf(val[k], 64, "%s", PICK(&r, INSTRUMENTS)); break;
            case V_COLOR: snprintf(val[k], 64, "%s", PICK(&r, COLORS)); break;
            }
        }
        int order[N_REL];
        for (int k = 0; k < N_REL; k++) order[k] = k;
        for (int k = N_REL - 1; k > 0; k--) { int j = rng_below(&r, k + 1), t = order[k]; order[k] = order[j]; order[j] = t; }
        int want_paras = 1 + rng_below(&r, 2), used = 0;
        char title[64];
        snprintf(title, sizeof title, "%s", name);
        for (char *c = title; *c; c++) if (*c == ' ') *c = '_';
        if (a) byte_vec_puts(&b, ",");
        byte_vec_puts(&b, "{\"title\":");
        json_str(&b, title);
        byte_vec_puts(&b, ",\"paragraphs\":[");
        for (int p = 0; p < want_paras && N_REL - used >= min_facts; p++) {
            fact f[6];
            int nf = 0;
            size_t clen = 0;
            while (nf < max_facts && used < N_REL) {
                const relation *R = &rel[order[used]];
                int first = nf == 0, use_name = first || rng_below(&r, 5) == 0;
                fact *F = &f[nf];
                F->vpos = expand(R->sentence, use_name ? name : pron, use_name ? named_poss : ppos,
                                 val[order[used]], name, F->text, sizeof F->text);
                size_t add = strlen(F->text) + (nf ? 1 : 0);
                if (nf >= min_facts && clen + add > MAX_CONTEXT) break;
                expand(R->q[rng_below(&r, 3)], "", "", "", name, F->question, sizeof F->question);
                snprintf(F->answer, sizeof F->answer, "%s", val[order[used]]);
                F->vpos += (int)(clen + (nf ? 1 : 0));
                clen += add;
                nf++; used++;
            }
            byte_vec ctx = {0};
            for (int k = 0; k < nf; k++) {
                if (k) byte_vec_append(&ctx, " ", 1);
                byte_vec_puts(&ctx, f[k].text);
            }
            if (p) byte_vec_puts(&b, ",");
            byte_vec_puts(&b, "{\"context\":");
            json_str(&b, ctx.v);
            byte_vec_puts(&b, ",\"qas\":[");
            for (int k = 0; k < nf; k++) {
                char id[40], num[32];
                snprintf(id, sizeof id, "%016llx%08llx", (unsigned long long)(id_salt ^ (qid * 0x9E3779B97F4A7C15ull)),
                         (unsigned long long)(qid & 0xffffffffull));
                qid++;
                if (k) byte_vec_puts(&b, ",");
                byte_vec_puts(&b, "{\"id\":");
                json_str(&b, id);
                byte_vec_puts(&b, ",\"question\":");
                json_str(&b, f[k].question);
                byte_vec_puts(&b, ",\"answers\":[{\"text\":");
                json_str(&b, f[k].answer);
                snprintf(num, sizeof num, ",\"answer_start\":%d}]}", f[k].vpos);   // ASCII: bytes = code points
                byte_vec_puts(&b, num);
            }
            byte_vec_puts(&b, "]}");
            byte_vec_free(&ctx);
        }
        byte_vec_puts(&b, "]}");
    }
    byte_vec_puts(&b, "]}\n");
    for (size_t i = 0; i < ns.cap; i++) free(ns.slot[i]);
    free(ns.slot);

    // atomic write: temp file in the same directory, then rename
    size_t tl = strlen(path) + 32;
    char *tmp = (char *)swq_xrealloc(NULL, tl);
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp); byte_vec_free(&b); return -1;
    }
    int bad = fwrite(b.v, 1, b.n, f) != b.n;
    bad |= fflush(f) != 0;
    int e = errno;
    bad |= fclose(f) != 0;
    if (bad) {
        if (!e) e = errno;
        snprintf(err, errlen, "%s: write failed: %s", tmp, strerror(e));
        remove(tmp); free(tmp); byte_vec_free(&b); return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        remove(tmp); free(tmp); byte_vec_free(&b); return -1;
    }
    free(tmp);
    byte_vec_free(&b);
    return 0;
}
