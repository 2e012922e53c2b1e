/*
 * plan: map a GGUF model and print the arena an engine needs for a budget.
 *
 *   plan MODEL.gguf BUDGET_BYTES [CTX_TOKENS]
 *
 * With CTX_TOKENS omitted (or 0) the context is the largest that fits the
 * budget. Exit status: 0 on success, 1 on a usage error, 2 when the library
 * refuses (the message says why).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arenalm.h"

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf BUDGET_BYTES [CTX_TOKENS]\n", argv[0]);
        return 1;
    }
    char *end = NULL;
    unsigned long long budget = strtoull(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0') {
        fprintf(stderr, "BUDGET_BYTES must be a number of bytes\n");
        return 1;
    }
    unsigned long ctx = argc == 4 ? strtoul(argv[3], NULL, 10) : 0;

    char err[256];
    alm_model *model = NULL;
    alm_status s = alm_model_open_file(argv[1], &model, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "cannot open %s: %s (%s)\n", argv[1], err, alm_status_str(s));
        return 2;
    }

    alm_model_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    char arch[32];
    s = alm_model_get_info(model, &info, arch, sizeof arch, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "model info: %s\n", err);
        alm_model_close(model);
        return 2;
    }
    printf("arenalm %s: %s, %u layers, width %u, %u/%u heads of %u, vocab %u, weights %.2f MiB (in place)\n",
           alm_version(), arch, info.n_layers, info.dim, info.n_heads, info.n_kv_heads,
           info.head_dim, info.vocab, mib(info.weights_bytes));

    /* The same struct alm_engine_create takes: the plan is the engine's arena. */
    alm_engine_params params;
    alm_engine_default_params(&params, sizeof params);
    params.ctx_tokens = (uint32_t)ctx;

    alm_memory_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.size = sizeof plan;
    s = alm_plan_for_budget(model, &params, (size_t)budget, &plan, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "plan: %s (%s)\n", err, alm_status_str(s));
        alm_model_close(model);
        return 2;
    }
    printf("budget %llu bytes: context %u tokens (%u pages of %u)\n", budget, plan.ctx_tokens,
           plan.kv_pages, plan.kv_page_tokens);
    printf("  %-22s %12llu\n", "model index", (unsigned long long)plan.model_index_bytes);
    printf("  %-22s %12llu\n", "tokenizer tables", (unsigned long long)plan.tokenizer_bytes);
    printf("  %-22s %12llu  (%llu bytes per token)\n", "kv page pool",
           (unsigned long long)plan.kv_pool_bytes, (unsigned long long)plan.kv_bytes_per_token);
    printf("  %-22s %12llu\n", "kv page table", (unsigned long long)plan.page_table_bytes);
    printf("  %-22s %12llu\n", "scratch", (unsigned long long)plan.scratch_bytes);
    printf("  %-22s %12llu\n", "engine state", (unsigned long long)plan.engine_state_bytes);
    printf("  %-22s %12llu  (%.2f MiB)\n", "total", (unsigned long long)plan.total_bytes,
           mib(plan.total_bytes));

    uint32_t max_ctx = 0;
    s = alm_plan_max_context(model, &params, (size_t)budget, &max_ctx, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "max context: %s\n", err);
        alm_model_close(model);
        return 2;
    }
    printf("largest context for this budget: %u tokens\n", max_ctx);
    return alm_model_close(model) == ALM_OK ? 0 : 2;
}
