// Sweeps: a grid (or explicit list) of cells, each a train+eval job or an evaluation of a
// trained switchable checkpoint, run as child `swq` processes by a rank-0 coordinator with
// a dynamic work queue over MPI; finished cells go to an fsync'd append-only journal, from
// which the tables (Markdown, CSV, JSON, grid order) are collated.
//
// Sweep file (libconfig):
//   base = "configs/x.cfg";                 // run config (kind "eval": optional, default the checkpoint's)
//   kind = "train";                         // or "eval" with checkpoint = "runs/x" (file or run dir)
//   sets = [ "train.steps=20" ];            // overrides for every cell
//   axes = ( { name = "attn_bits"; key = "quant.configs.[0].components.attn"; values = [4, 3]; } );
//   cells = ( [ "k=v", ... ], ... );        // instead of axes: an explicit list; optional names = [...]
//   report = [ "4-bit" ];                   // configs whose metrics fill the table (default: all)
//   out_dir = "runs/sweep";  max_cells = 256;
#ifndef SWQ_SWEEP_H
#define SWQ_SWEEP_H
#include <stdint.h>
#include <stddef.h>
#include "../launch/run.h"

#define SWEEP_DEFAULT_MAX_CELLS 256

typedef struct {
    int nsets;
    char **sets;       // "key=value" overrides of this cell (after the sweep's own `sets`)
    char **shown;      // [ncols] the value shown in the table ("" when the cell leaves it)
    char id[16];       // "c0007": its directory under <out>/cells/
} sweep_cell;

typedef struct {
    char path[512];
    char kind[8];              // "train" | "eval"
    char base[512];            // run config ("" = the checkpoint's config, eval only)
    char checkpoint[1024];     // kind "eval": the resolved checkpoint file
    char out_dir[512];         // from the file (the command line may override)
    int max_cells;
    int nsets;
    char **sets;
    int ncols;
    char **col_key, **col_name;
    int ncells;
    sweep_cell *cells;
    int nreport;
    char **report;             // config names
    char *base_text;           // base settings resolved with `sets` (every rank builds it)
    char *canon;               // canonical definition text (hashed for journals and ranks)
    uint64_t hash;
} sweep_def;

// Parse and expand path. Errors name the file and the key ("axis 'x': values is empty").
int sweep_load(const char *path, sweep_def *sw, char *err, size_t errlen);
void sweep_free(sweep_def *sw);
// Rank 0, before any work: the grid limit (unless force), every cell's settings resolved.
// A malformed key (unknown setting, no such element) is an error of the sweep; a cell whose
// values are refused (out of range, wrong type) gets cell_err[i] (malloc'd) and fails when run.
int sweep_validate(const sweep_def *sw, int force, char **cell_err, char *err, size_t errlen);
// The resolved run config of cell i (malloc'd libconfig text).
int sweep_cell_config(const sweep_def *sw, int i, char **text, char *err, size_t errlen);

// Journals: <out>/journal.jsonl (or journal.slice-I-of-N.jsonl); the first line holds the
// sweep hash. Fills rows[i] (malloc'd JSON text) of every cell finished in any journal of out.
int sweep_journal_load(const sweep_def *sw, const char *out, char **rows, char *err, size_t errlen);
// Open (create with its header) the journal for appending; returns an fd or -1.
int sweep_journal_open(const sweep_def *sw, const char *out, int slice_i, int slice_n, char *err, size_t errlen);
int sweep_journal_append(int fd, const char *row, char *err, size_t errlen);

// Run cell i as a child swq (stdout/stderr to <out>/cells/<id>/log.txt). start: pid or -1 with
// *row set (failed before starting); finish: waits (block=1) or polls; returns 1 with *row when done.
typedef struct { int cell; int pid; double t0; char dir[1024]; } sweep_job;
int sweep_cell_start(const sweep_def *sw, const char *out, int i, const char *pre_err, sweep_job *job, char **row);
int sweep_cell_finish(const sweep_def *sw, sweep_job *job, int block, char **row);

// table.md, table.csv, table.json in out, from rows in grid order (NULL = not run yet).
int sweep_write_tables(const sweep_def *sw, const char *out, char *const *rows, char *err, size_t errlen);

// The whole sweep on this rank: rank 0 coordinates (and works when alone or the queue is long),
// other ranks work. Cells with index % slice_n != slice_i are left out. Returns 0 when every
// cell of the slice finished (failed cells included), -1 on an error of the sweep itself.
int sweep_run(const sweep_def *sw, const char *out, int slice_i, int slice_n, swq_dist *d, char *err, size_t errlen);
#endif
