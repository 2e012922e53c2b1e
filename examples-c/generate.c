/*
 * generate: greedy text generation inside a static arena.
 *
 *   generate MODEL.gguf "prompt" [N_TOKENS]      (default 64 tokens)
 *
 * The arena is `static uint8_t arena[ALM_ARENA_BYTES]`. ALM_ARENA_BYTES is the
 * planner's total for this program's parameters (a 512-token context, F16 KV,
 * micro-batches of 64, one output row, one thread): the Makefile asks
 * `arenalm plan MODEL --ctx 512 -t 1 --json` at build time and writes it into
 * arena_size.h, so the array is exactly as large as the engine needs and no
 * larger. The model file is mapped read-only; nothing else is allocated for
 * the weights. Prints the generated text, the generated ids, and the arena
 * bytes used of ALM_ARENA_BYTES.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena_size.h"
#include "arenalm.h"

static _Alignas(64) uint8_t arena[ALM_ARENA_BYTES];

#define MAX_PROMPT 1024

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N_TOKENS]\n", argv[0]);
        return 1;
    }
    int n_tokens = argc == 4 ? atoi(argv[3]) : 64;
    char err[256];
    alm_model *model = NULL;
    alm_status s = alm_model_open_file(argv[1], &model, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 2;
    }

    alm_engine_params p;
    alm_engine_default_params(&p, sizeof p);
    p.ctx_tokens = 512;
    p.threads = 1;
    alm_engine *engine = NULL;
    s = alm_engine_create(model, arena, sizeof arena, &p, &engine, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "engine: %s (%s)\n", err, alm_status_str(s));
        alm_model_close(model);
        return 2;
    }
    alm_tokenizer *tok = NULL;
    if (alm_engine_get_tokenizer(engine, &tok, err, sizeof err) != ALM_OK) {
        fprintf(stderr, "tokenizer: %s\n", err);
        return 2;
    }

    static uint32_t ids[MAX_PROMPT];
    size_t n_ids = 0;
    s = alm_tokenize(tok, argv[2], strlen(argv[2]), ALM_TOKENIZE_ADD_BOS | ALM_TOKENIZE_PARSE_SPECIAL,
                     ids, MAX_PROMPT, &n_ids, err, sizeof err);
    if (s != ALM_OK || n_ids == 0) {
        fprintf(stderr, "tokenize: %s\n", s == ALM_OK ? "empty prompt" : err);
        return 2;
    }
    alm_sampler_params sp;
    alm_sampler_default_params(&sp, sizeof sp);
    sp.temperature = 0.0f; /* greedy */
    alm_engine_set_sampler(engine, &sp, NULL, 0);

    s = alm_engine_eval(engine, ids, n_ids, ALM_OUTPUTS_LAST, NULL, NULL, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "eval: %s\n", err);
        return 2;
    }
    printf("%s", argv[2]);
    fflush(stdout);

    alm_detok detok;
    alm_detok_init(&detok, 0, 1);
    uint32_t generated[1024];
    int n_gen = 0;
    char piece[256];
    size_t n_piece = 0;
    for (int i = 0; i < n_tokens && i < 1024; i++) {
        uint32_t t;
        if (alm_engine_sample(engine, &t, err, sizeof err) != ALM_OK) {
            fprintf(stderr, "sample: %s\n", err);
            return 2;
        }
        int eog = 0;
        alm_token_is_eog(tok, t, &eog);
        if (eog) break;
        generated[n_gen++] = t;
        if (alm_detok_push(tok, &detok, t, piece, sizeof piece, &n_piece) == ALM_OK) {
            fwrite(piece, 1, n_piece, stdout);
            fflush(stdout);
        }
        s = alm_engine_eval(engine, &t, 1, ALM_OUTPUTS_LAST, NULL, NULL, err, sizeof err);
        if (s != ALM_OK) {
            fprintf(stderr, "\neval: %s\n", err);
            break;
        }
    }
    if (alm_detok_finish(&detok, piece, sizeof piece, &n_piece) == ALM_OK) fwrite(piece, 1, n_piece, stdout);
    printf("\n--\nids:");
    for (int i = 0; i < n_gen; i++) printf(" %u", generated[i]);
    alm_engine_state st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    alm_engine_get_state(engine, &st);
    printf("\narena: %llu of %llu bytes used (kernel %s)\n", (unsigned long long)st.arena_used,
           (unsigned long long)sizeof arena, alm_kernel_str(st.kernel));

    alm_tokenizer_free(tok);
    if (alm_engine_free(engine) != ALM_OK) return 2;
    return alm_model_close(model) == ALM_OK ? 0 : 2;
}
