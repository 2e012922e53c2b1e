/*
 * abuse: calls every export of arenalm.h the wrong way and checks the exact
 * status of each call: NULL for every pointer argument, every struct `size`
 * from 0 to sizeof + 8, enum values out of range, absurd counts, misaligned
 * and too-small arenas, use after close and free, double free, handles of
 * the wrong type, made-up handles, bad token ids, a FIFO and a directory as
 * model files. At the end the engine still works.
 *
 *   abuse MODEL.gguf
 *
 * Built and run (under valgrind when installed) by tests/tests/c_programs.rs.
 * Prints one line per failed expectation and exits 1 if there was any.
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arenalm.h"

static int failures = 0;
static int checks = 0;

static void expect_status(alm_status got, alm_status want, const char *what, int line) {
    checks++;
    if (got != want) {
        fprintf(stderr, "abuse.c:%d: %s\n    got %s (%d), want %s (%d)\n", line, what,
                alm_status_str(got), (int)got, alm_status_str(want), (int)want);
        failures++;
    }
}

static void expect_true(int ok, const char *what, int line) {
    checks++;
    if (!ok) {
        fprintf(stderr, "abuse.c:%d: expected %s\n", line, what);
        failures++;
    }
}

#define EXPECT(call, want) expect_status((call), (want), #call, __LINE__)
#define CHECK(cond) expect_true((cond) != 0, #cond, __LINE__)

static char err[256];

/* ---- the size rule, restated from the header ------------------------------ */

struct field {
    size_t offset, size, align;
};

#define FIELD(T, f, A) {offsetof(T, f), sizeof(((T *)0)->f), _Alignof(A)}

/* A size is accepted if it is at least the whole struct, or the end of a
 * field that a C struct of the leading fields would end at (a multiple of
 * their alignment). */
static int size_accepted(const struct field *f, size_t n, size_t full, size_t size) {
    if (size >= full) return 1;
    size_t align = 1;
    for (size_t i = 0; i < n; i++) {
        if (f[i].align > align) align = f[i].align;
        size_t end = f[i].offset + f[i].size;
        if (end == size) return size % align == 0;
        if (end > size) return 0;
    }
    return 0;
}

static const struct field ENGINE_PARAMS[] = {
    FIELD(alm_engine_params, size, uint32_t),
    FIELD(alm_engine_params, ctx_tokens, uint32_t),
    FIELD(alm_engine_params, allow_ctx_beyond_train, uint32_t),
    FIELD(alm_engine_params, kv_type, uint32_t),
    FIELD(alm_engine_params, page_tokens, uint32_t),
    FIELD(alm_engine_params, max_batch, uint32_t),
    FIELD(alm_engine_params, max_outputs, uint32_t),
    FIELD(alm_engine_params, threads, uint32_t),
    FIELD(alm_engine_params, kernel, uint32_t),
    FIELD(alm_engine_params, parallel_for, alm_parallel_for_fn),
    FIELD(alm_engine_params, parallel_user_data, void *),
};

static const struct field SAMPLER_PARAMS[] = {
    FIELD(alm_sampler_params, size, uint32_t),
    FIELD(alm_sampler_params, temperature, float),
    FIELD(alm_sampler_params, top_k, uint32_t),
    FIELD(alm_sampler_params, top_p, float),
    FIELD(alm_sampler_params, min_p, float),
    FIELD(alm_sampler_params, repeat_penalty, float),
    FIELD(alm_sampler_params, repeat_last_n, uint32_t),
    FIELD(alm_sampler_params, seed, uint64_t),
};

static const struct field MODEL_INFO[] = {
    FIELD(alm_model_info, size, uint32_t),
    FIELD(alm_model_info, n_layers, uint32_t),
    FIELD(alm_model_info, dim, uint32_t),
    FIELD(alm_model_info, ffn_dim, uint32_t),
    FIELD(alm_model_info, n_heads, uint32_t),
    FIELD(alm_model_info, n_kv_heads, uint32_t),
    FIELD(alm_model_info, head_dim, uint32_t),
    FIELD(alm_model_info, rope_dim, uint32_t),
    FIELD(alm_model_info, ctx_train, uint32_t),
    FIELD(alm_model_info, vocab, uint32_t),
    FIELD(alm_model_info, rope_base, float),
    FIELD(alm_model_info, rms_eps, float),
    FIELD(alm_model_info, tied_embeddings, uint32_t),
    FIELD(alm_model_info, file_type, uint32_t),
    FIELD(alm_model_info, gguf_version, uint32_t),
    FIELD(alm_model_info, tensor_count, uint64_t),
    FIELD(alm_model_info, metadata_count, uint64_t),
    FIELD(alm_model_info, weights_bytes, uint64_t),
    FIELD(alm_model_info, file_bytes, uint64_t),
};

static const struct field MEMORY_PLAN[] = {
    FIELD(alm_memory_plan, size, uint32_t),
    FIELD(alm_memory_plan, kv_page_tokens, uint32_t),
    FIELD(alm_memory_plan, kv_pages, uint32_t),
    FIELD(alm_memory_plan, ctx_tokens, uint32_t),
    FIELD(alm_memory_plan, weights_in_place_bytes, uint64_t),
    FIELD(alm_memory_plan, weights_converted_bytes, uint64_t),
    FIELD(alm_memory_plan, engine_state_bytes, uint64_t),
    FIELD(alm_memory_plan, model_index_bytes, uint64_t),
    FIELD(alm_memory_plan, tokenizer_bytes, uint64_t),
    FIELD(alm_memory_plan, kv_bytes_per_token, uint64_t),
    FIELD(alm_memory_plan, kv_bytes_per_page, uint64_t),
    FIELD(alm_memory_plan, kv_pool_bytes, uint64_t),
    FIELD(alm_memory_plan, page_table_bytes, uint64_t),
    FIELD(alm_memory_plan, scratch_bytes, uint64_t),
    FIELD(alm_memory_plan, total_bytes, uint64_t),
};

static const struct field ENGINE_STATE[] = {
    FIELD(alm_engine_state, size, uint32_t),
    FIELD(alm_engine_state, kernel, uint32_t),
    FIELD(alm_engine_state, n_past, uint64_t),
    FIELD(alm_engine_state, ctx_capacity, uint64_t),
    FIELD(alm_engine_state, vocab, uint64_t),
    FIELD(alm_engine_state, arena_used, uint64_t),
};

static const struct field ARCH[] = {
    FIELD(alm_arch, size, uint32_t),
    FIELD(alm_arch, n_layers, uint32_t),
    FIELD(alm_arch, dim, uint32_t),
    FIELD(alm_arch, n_heads, uint32_t),
    FIELD(alm_arch, n_kv_heads, uint32_t),
    FIELD(alm_arch, head_dim, uint32_t),
    FIELD(alm_arch, ffn_dim, uint32_t),
    FIELD(alm_arch, vocab, uint32_t),
    FIELD(alm_arch, tied_embeddings, uint32_t),
    FIELD(alm_arch, qkv_bias, uint32_t),
    FIELD(alm_arch, norms_per_layer, uint32_t),
    FIELD(alm_arch, qk_norm, uint32_t),
    FIELD(alm_arch, rope_dim, uint32_t),
    FIELD(alm_arch, sliding_window, uint32_t),
    FIELD(alm_arch, n_sliding_layers, uint32_t),
    FIELD(alm_arch, kv_lora_rank, uint32_t),
    FIELD(alm_arch, q_lora_rank, uint32_t),
    FIELD(alm_arch, qk_nope_head_dim, uint32_t),
    FIELD(alm_arch, qk_rope_head_dim, uint32_t),
    FIELD(alm_arch, v_head_dim, uint32_t),
    FIELD(alm_arch, n_experts, uint32_t),
    FIELD(alm_arch, n_active, uint32_t),
    FIELD(alm_arch, expert_ffn_dim, uint32_t),
    FIELD(alm_arch, n_shared, uint32_t),
    FIELD(alm_arch, n_dense_layers, uint32_t),
    FIELD(alm_arch, router_bias, uint32_t),
};

static const struct field WHATIF_PARAMS[] = {
    FIELD(alm_whatif_params, size, uint32_t),
    FIELD(alm_whatif_params, weight_type, uint32_t),
    FIELD(alm_whatif_params, kv_type, uint32_t),
    FIELD(alm_whatif_params, ctx_tokens, uint32_t),
    FIELD(alm_whatif_params, sequences, uint32_t),
    FIELD(alm_whatif_params, tensor_parallel, uint32_t),
    FIELD(alm_whatif_params, max_batch, uint32_t),
    FIELD(alm_whatif_params, max_outputs, uint32_t),
    FIELD(alm_whatif_params, threads, uint32_t),
    FIELD(alm_whatif_params, page_tokens, uint32_t),
};

static const struct field ARCH_PLAN[] = {
    FIELD(alm_arch_plan, size, uint32_t),
    FIELD(alm_arch_plan, tensor_parallel, uint32_t),
    FIELD(alm_arch_plan, params_total, uint64_t),
    FIELD(alm_arch_plan, params_active, uint64_t),
    FIELD(alm_arch_plan, weights_resident_bytes, uint64_t),
    FIELD(alm_arch_plan, weights_read_per_token_bytes, uint64_t),
    FIELD(alm_arch_plan, kv_bytes_per_token, uint64_t),
    FIELD(alm_arch_plan, kv_bytes, uint64_t),
    FIELD(alm_arch_plan, shard_params_total, uint64_t),
    FIELD(alm_arch_plan, shard_params_active, uint64_t),
    FIELD(alm_arch_plan, shard_weights_resident_bytes, uint64_t),
    FIELD(alm_arch_plan, shard_weights_read_per_token_bytes, uint64_t),
    FIELD(alm_arch_plan, shard_kv_bytes_per_token, uint64_t),
    FIELD(alm_arch_plan, shard_kv_bytes, uint64_t),
    FIELD(alm_arch_plan, shard_scratch_bytes, uint64_t),
    FIELD(alm_arch_plan, shard_total_bytes, uint64_t),
};

#define N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))
#define ACCEPTED(table, T, s) size_accepted(table, N_FIELDS(table), sizeof(T), (s))

/* A buffer for a struct of up to 256 bytes plus slack, with a known pattern. */
#define PATTERN 0xAB
static _Alignas(16) unsigned char buf[256 + 16];

static void fill_pattern(void) { memset(buf, PATTERN, sizeof buf); }

static int untouched_from(size_t from) {
    for (size_t i = from; i < sizeof buf; i++)
        if (buf[i] != PATTERN) return 0;
    return 1;
}

static uint32_t buf_size_field(void) {
    uint32_t v;
    memcpy(&v, buf, sizeof v);
    return v;
}

static void set_buf_size_field(uint32_t v) { memcpy(buf, &v, sizeof v); }

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* ---- helpers ---------------------------------------------------------------- */

static void *aligned_arena(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory for a %zu-byte arena\n", bytes);
        exit(3);
    }
    return p;
}

static alm_engine_params defaults(void) {
    alm_engine_params p;
    memset(&p, 0, sizeof p);
    if (alm_engine_default_params(&p, sizeof p) != ALM_OK) {
        fprintf(stderr, "alm_engine_default_params failed\n");
        exit(3);
    }
    return p;
}

static alm_memory_plan plan_out(void) {
    alm_memory_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.size = sizeof plan;
    return plan;
}

static alm_engine *abuse_engine_for_callback = NULL;
static alm_status callback_status = ALM_OK;
static int callback_calls = 0;

/* A parallel-for that calls back into its own engine: refused with BUSY. */
static void reentrant_parallel_for(void *user, size_t n, alm_task_fn task, void *ctx) {
    (void)user;
    callback_calls++;
    callback_status = alm_engine_reset(abuse_engine_for_callback);
    for (size_t i = 0; i < n; i++) task(ctx, i);
}

/* ---- sections --------------------------------------------------------------- */

static void static_strings(void) {
    CHECK(alm_version() != NULL);
    for (int32_t s = 0; s <= 14; s++) CHECK(strcmp(alm_status_str(s), "unknown status") != 0);
    int32_t bad_status[] = {-1, 15, 1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof bad_status / sizeof bad_status[0]; i++)
        CHECK(strcmp(alm_status_str(bad_status[i]), "unknown status") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_AUTO), "auto") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_SCALAR), "scalar") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_AVX2), "avx2") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_NEON), "neon") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_NEON_DOTPROD), "neon-dotprod") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_AVX_VNNI), "avx-vnni") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_AVX512_VNNI), "avx512-vnni") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_NEON_I8MM), "neon-i8mm") == 0);
    CHECK(strcmp(alm_kernel_str(ALM_KERNEL_NEON_I8MM + 1), "unknown kernel") == 0);
    CHECK(strcmp(alm_kernel_str(UINT32_MAX), "unknown kernel") == 0);
}

static void default_params_sizes(void) {
    EXPECT(alm_engine_default_params(NULL, sizeof(alm_engine_params)), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_sampler_default_params(NULL, sizeof(alm_sampler_params)), ALM_ERR_NULL_ARGUMENT);
    for (size_t size = 0; size <= sizeof(alm_engine_params) + 8; size++) {
        fill_pattern();
        int ok = ACCEPTED(ENGINE_PARAMS, alm_engine_params, size);
        EXPECT(alm_engine_default_params((alm_engine_params *)(void *)buf, size),
               ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        size_t written = ok ? min_size(size, sizeof(alm_engine_params)) : 0;
        CHECK(untouched_from(written));
        if (ok) CHECK(buf_size_field() == written);
    }
    for (size_t size = 0; size <= sizeof(alm_sampler_params) + 8; size++) {
        fill_pattern();
        int ok = ACCEPTED(SAMPLER_PARAMS, alm_sampler_params, size);
        EXPECT(alm_sampler_default_params((alm_sampler_params *)(void *)buf, size),
               ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        size_t written = ok ? min_size(size, sizeof(alm_sampler_params)) : 0;
        CHECK(untouched_from(written));
    }
    /* The rule's landmarks: all nine u32 fields, never half a pointer. */
    size_t fp = offsetof(alm_engine_params, parallel_for);
    CHECK(ACCEPTED(ENGINE_PARAMS, alm_engine_params, 36));
    CHECK(!ACCEPTED(ENGINE_PARAMS, alm_engine_params, fp + sizeof(void *) / 2));
    CHECK(ACCEPTED(ENGINE_PARAMS, alm_engine_params, fp + sizeof(alm_parallel_for_fn)));
    CHECK(!ACCEPTED(ENGINE_PARAMS, alm_engine_params, 3));
}

static void model_calls(const char *path, const uint8_t *bytes, size_t len, alm_model *m) {
    alm_model *out = (alm_model *)(uintptr_t)0x10; /* must be reset to NULL */
    EXPECT(alm_model_open_bytes(NULL, len, &out, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    CHECK(out == NULL);
    EXPECT(alm_model_open_bytes(bytes, len, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_model_open_bytes(bytes, 100, &out, err, sizeof err), ALM_ERR_GGUF);
    EXPECT(alm_model_open_bytes(bytes, SIZE_MAX, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_model_open_bytes(bytes, 0, &out, NULL, 0), ALM_ERR_GGUF);
    EXPECT(alm_model_open_file(NULL, &out, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_model_open_file(path, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_model_open_file("/nonexistent/model.gguf", &out, err, sizeof err), ALM_ERR_IO);
    EXPECT(alm_model_open_file("/", &out, err, sizeof err), ALM_ERR_IO);
    CHECK(strstr(err, "directory") != NULL);
    EXPECT(alm_model_open_file("/dev/null", &out, err, sizeof err), ALM_ERR_IO);

    /* A FIFO would block an open without O_NONBLOCK forever. */
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/arenalm-abuse-%ld.fifo", (long)getpid());
    unlink(fifo);
    if (mkfifo(fifo, 0600) == 0) {
        EXPECT(alm_model_open_file(fifo, &out, err, sizeof err), ALM_ERR_IO);
        CHECK(strstr(err, "FIFO") != NULL);
        unlink(fifo);
    } else {
        expect_true(0, "mkfifo succeeds", __LINE__);
    }

    /* Info: NULLs, every size of the out struct. */
    EXPECT(alm_model_get_info(NULL, (alm_model_info *)(void *)buf, NULL, 0, err, sizeof err),
           ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_model_get_info(m, NULL, NULL, 0, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    for (size_t size = 0; size <= sizeof(alm_model_info) + 8; size++) {
        fill_pattern();
        set_buf_size_field((uint32_t)size);
        int ok = ACCEPTED(MODEL_INFO, alm_model_info, size);
        EXPECT(alm_model_get_info(m, (alm_model_info *)(void *)buf, NULL, 0, err, sizeof err),
               ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        size_t written = ok ? min_size(size, sizeof(alm_model_info)) : 4;
        CHECK(untouched_from(written));
        CHECK(buf_size_field() == (ok ? written : size));
    }
    alm_model_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    char arch[4];
    EXPECT(alm_model_get_info(m, &info, arch, sizeof arch, err, sizeof err), ALM_ERR_BUFFER_TOO_SMALL);
    CHECK(strcmp(arch, "lla") == 0);
    CHECK(info.vocab == 49152 && info.ctx_train == 8192);
}

static void plan_calls(alm_model *m) {
    alm_engine_params p = defaults();
    alm_memory_plan plan = plan_out();
    uint32_t ctx = 0;
    const size_t budget = 64u << 20;

    EXPECT(alm_plan(NULL, &p, &plan, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan(m, &p, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan(m, NULL, &plan, err, sizeof err), ALM_ERR_INVALID_ARGUMENT); /* ctx 0, no budget */
    EXPECT(alm_plan_for_budget(NULL, &p, budget, &plan, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_for_budget(m, NULL, budget, &plan, err, sizeof err), ALM_OK);
    EXPECT(alm_plan_for_budget(m, &p, budget, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_max_context(NULL, &p, budget, &ctx, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_max_context(m, &p, budget, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_max_context(m, NULL, budget, &ctx, err, sizeof err), ALM_OK);
    CHECK(ctx > 0 && ctx <= 8192);

    /* Every params size: read only up to a field boundary. */
    for (size_t size = 0; size <= sizeof(alm_engine_params) + 8; size++) {
        alm_engine_params q = defaults();
        q.ctx_tokens = 64;
        q.size = (uint32_t)size;
        int ok = ACCEPTED(ENGINE_PARAMS, alm_engine_params, size);
        EXPECT(alm_plan_for_budget(m, &q, budget, &plan, err, sizeof err), ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
    }
    /* Every out size. */
    for (size_t size = 0; size <= sizeof(alm_memory_plan) + 8; size++) {
        fill_pattern();
        set_buf_size_field((uint32_t)size);
        int ok = ACCEPTED(MEMORY_PLAN, alm_memory_plan, size);
        EXPECT(alm_plan_for_budget(m, &p, budget, (alm_memory_plan *)(void *)buf, err, sizeof err),
               ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        CHECK(untouched_from(ok ? min_size(size, sizeof(alm_memory_plan)) : 4));
    }

    /* Enums out of range. */
    alm_engine_params q = defaults();
    q.kv_type = 3;
    EXPECT(alm_plan_for_budget(m, &q, budget, &plan, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    q.kv_type = UINT32_MAX;
    EXPECT(alm_plan_for_budget(m, &q, budget, &plan, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    q = defaults();
    q.kernel = ALM_KERNEL_NEON_I8MM + 1;
    EXPECT(alm_plan_for_budget(m, &q, budget, &plan, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);

    /* Absurd counts, each named with its cap. */
    struct {
        uint32_t *field;
        uint32_t value;
    } absurd[] = {
        {&q.threads, 0},
        {&q.threads, ALM_MAX_THREADS + 1},
        {&q.threads, UINT32_MAX},
        {&q.max_batch, 0},
        {&q.max_batch, ALM_MAX_BATCH + 1},
        {&q.max_outputs, 0},
        {&q.max_outputs, ALM_MAX_OUTPUTS + 1},
        {&q.page_tokens, 0},
        {&q.page_tokens, ALM_MAX_PAGE_TOKENS + 1},
        {&q.ctx_tokens, ALM_MAX_CTX_TOKENS + 1},
    };
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
        q = defaults();
        q.allow_ctx_beyond_train = 1;
        *absurd[i].field = absurd[i].value;
        EXPECT(alm_plan_for_budget(m, &q, budget, &plan, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
        CHECK(strstr(err, "out of range") != NULL);
    }
    /* Beyond the training context: refused naming both numbers, unless allowed. */
    q = defaults();
    q.ctx_tokens = 8193;
    EXPECT(alm_plan(m, &q, &plan, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "8193") != NULL && strstr(err, "8192") != NULL);
    q.allow_ctx_beyond_train = 1;
    EXPECT(alm_plan(m, &q, &plan, err, sizeof err), ALM_OK);
    CHECK(plan.ctx_tokens == 8193);
    /* A budget too small for one page. */
    EXPECT(alm_plan_for_budget(m, &p, 1000, &plan, err, sizeof err), ALM_ERR_BUDGET);
    EXPECT(alm_plan_max_context(m, &p, 1000, &ctx, err, sizeof err), ALM_ERR_BUDGET);
}

/* A small valid architecture for what-if calls: Llama-like, 2 layers. */
static alm_arch small_arch(void) {
    alm_arch a;
    memset(&a, 0, sizeof a);
    EXPECT(alm_arch_default_params(&a, sizeof a), ALM_OK);
    a.n_layers = 2;
    a.dim = 64;
    a.n_heads = 4;
    a.n_kv_heads = 2;
    a.head_dim = 16;
    a.ffn_dim = 128;
    a.vocab = 100;
    return a;
}

static alm_whatif_params whatif_defaults(void) {
    alm_whatif_params p;
    memset(&p, 0, sizeof p);
    EXPECT(alm_whatif_default_params(&p, sizeof p), ALM_OK);
    return p;
}

static void whatif_calls(void) {
    alm_arch a = small_arch();
    alm_whatif_params p = whatif_defaults();
    alm_arch_plan out;
    memset(&out, 0, sizeof out);
    out.size = sizeof out;
    CHECK(a.norms_per_layer == 2 && p.weight_type == 1 && p.ctx_tokens == 2048);

    EXPECT(alm_arch_default_params(NULL, sizeof(alm_arch)), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_whatif_default_params(NULL, sizeof(alm_whatif_params)), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_arch(NULL, &p, &out, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_arch(&a, &p, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_plan_arch(&a, NULL, &out, err, sizeof err), ALM_OK);
    /* 2 layers x 2 x 2 KV heads x 16 x 2 bytes = 256 a token, 2048 tokens. */
    CHECK(out.kv_bytes_per_token == 256 && out.kv_bytes == 256 * 2048);
    CHECK(out.tensor_parallel == 1 && out.shard_kv_bytes == out.kv_bytes);

    /* Every size of every struct: accepted only on a field boundary. */
    for (size_t size = 0; size <= sizeof(alm_arch) + 8; size++) {
        fill_pattern();
        int ok = ACCEPTED(ARCH, alm_arch, size);
        EXPECT(alm_arch_default_params((alm_arch *)(void *)buf, size), ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        CHECK(untouched_from(ok ? min_size(size, sizeof(alm_arch)) : 0));
        alm_arch b = small_arch();
        b.size = (uint32_t)size;
        /* A prefix without the sizes is all zeros: refused as out of range. */
        alm_status want = !ok ? ALM_ERR_INVALID_ARGUMENT
                              : size >= offsetof(alm_arch, tied_embeddings) ? ALM_OK : ALM_ERR_INVALID_ARGUMENT;
        EXPECT(alm_plan_arch(&b, &p, &out, err, sizeof err), want);
    }
    for (size_t size = 0; size <= sizeof(alm_whatif_params) + 8; size++) {
        fill_pattern();
        int ok = ACCEPTED(WHATIF_PARAMS, alm_whatif_params, size);
        EXPECT(alm_whatif_default_params((alm_whatif_params *)(void *)buf, size),
               ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        CHECK(untouched_from(ok ? min_size(size, sizeof(alm_whatif_params)) : 0));
        alm_whatif_params q = whatif_defaults();
        q.size = (uint32_t)size;
        EXPECT(alm_plan_arch(&a, &q, &out, err, sizeof err), ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
    }
    for (size_t size = 0; size <= sizeof(alm_arch_plan) + 8; size++) {
        fill_pattern();
        set_buf_size_field((uint32_t)size);
        int ok = ACCEPTED(ARCH_PLAN, alm_arch_plan, size);
        EXPECT(alm_plan_arch(&a, &p, (alm_arch_plan *)(void *)buf, err, sizeof err),
               ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        CHECK(untouched_from(ok ? min_size(size, sizeof(alm_arch_plan)) : 4));
    }

    /* Enum-like values out of range. */
    alm_whatif_params q = whatif_defaults();
    q.weight_type = 4; /* ids 4 and 5 were removed from ggml */
    EXPECT(alm_plan_arch(&a, &q, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "weight_type = 4") != NULL);
    q = whatif_defaults();
    q.kv_type = 3;
    EXPECT(alm_plan_arch(&a, &q, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    /* Absurd or inconsistent counts, each named. */
    struct {
        uint32_t *field;
        uint32_t value;
        const char *name;
    } absurd[] = {
        {&q.ctx_tokens, 0, "ctx_tokens"},
        {&q.ctx_tokens, ALM_MAX_CTX_TOKENS + 1, "ctx_tokens"},
        {&q.sequences, 0, "sequences"},
        {&q.tensor_parallel, 0, "shards"},
        {&q.threads, ALM_MAX_THREADS + 1, "threads"},
        {&q.max_batch, 0, "max_batch"},
        {&q.page_tokens, UINT32_MAX, "page_tokens"},
    };
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
        q = whatif_defaults();
        *absurd[i].field = absurd[i].value;
        EXPECT(alm_plan_arch(&a, &q, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
        CHECK(strstr(err, absurd[i].name) != NULL);
    }
    alm_arch b = small_arch();
    b.n_kv_heads = 3;
    EXPECT(alm_plan_arch(&b, &p, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "n_kv_heads") != NULL);
    b = small_arch();
    b.n_experts = 4;
    b.n_active = 5;
    b.expert_ffn_dim = 32;
    EXPECT(alm_plan_arch(&b, &p, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "n_active") != NULL);
    b = small_arch();
    b.dim = UINT32_MAX;
    EXPECT(alm_plan_arch(&b, &p, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    /* Q4_K rows must be whole 256-value blocks: 64 is not. */
    q = whatif_defaults();
    q.weight_type = 12;
    EXPECT(alm_plan_arch(&a, &q, &out, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    /* Every size at its cap: an overflow error, not a wrapped number. */
    b = small_arch();
    b.n_layers = b.dim = b.n_heads = b.n_kv_heads = b.head_dim = b.ffn_dim = b.vocab = 1u << 24;
    q = whatif_defaults();
    q.ctx_tokens = ALM_MAX_CTX_TOKENS;
    EXPECT(alm_plan_arch(&b, &q, &out, err, sizeof err), ALM_ERR_OVERFLOW);
}

static void create_calls(alm_model *m, const uint8_t *model_bytes, alm_model *from_bytes) {
    alm_engine_params p = defaults();
    p.ctx_tokens = 32;
    alm_memory_plan plan = plan_out();
    EXPECT(alm_plan(m, &p, &plan, err, sizeof err), ALM_OK);
    size_t total = (size_t)plan.total_bytes;
    unsigned char *arena = aligned_arena(total + 64);
    alm_engine *e = (alm_engine *)(uintptr_t)0x10;

    EXPECT(alm_engine_create(NULL, arena, total, &p, &e, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    CHECK(e == NULL);
    EXPECT(alm_engine_create(m, NULL, total, &p, &e, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_create(m, arena, total, &p, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_create(m, arena, SIZE_MAX, &p, &e, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    /* Too small: 0 bytes, 1 byte, one byte short. */
    EXPECT(alm_engine_create(m, arena, 0, &p, &e, err, sizeof err), ALM_ERR_BUDGET);
    EXPECT(alm_engine_create(m, arena, 1, &p, &e, err, sizeof err), ALM_ERR_BUDGET);
    EXPECT(alm_engine_create(m, arena, total - 1, &p, &e, err, sizeof err), ALM_ERR_BUDGET);
    /* Misaligned: the plan's bytes are not enough after the alignment skip... */
    EXPECT(alm_engine_create(m, arena + 1, total, &p, &e, err, sizeof err), ALM_ERR_BUDGET);
    /* ...the plan plus 63 are. */
    EXPECT(alm_engine_create(m, arena + 1, total + 63, &p, &e, err, sizeof err), ALM_OK);
    EXPECT(alm_engine_free(e), ALM_OK);
    /* An arena over the model's own bytes is refused before it is written. */
    EXPECT(alm_engine_create(from_bytes, (void *)(uintptr_t)model_bytes, total, &p, &e, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    /* Every params size that is not a field boundary; half a function pointer included. */
    for (size_t size = 0; size <= sizeof(alm_engine_params) + 8; size++) {
        if (ACCEPTED(ENGINE_PARAMS, alm_engine_params, size)) continue;
        alm_engine_params q = p;
        q.parallel_for = reentrant_parallel_for;
        q.size = (uint32_t)size;
        EXPECT(alm_engine_create(m, arena, total, &q, &e, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
        CHECK(e == NULL);
    }
    /* Enums and absurd counts, refused before anything starts. */
    alm_engine_params q = p;
    q.kernel = 99;
    EXPECT(alm_engine_create(m, arena, total, &q, &e, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    q = p;
    q.threads = UINT32_MAX;
    EXPECT(alm_engine_create(m, arena, total, &q, &e, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    /* The most threads allowed, in an arena too small for their scratch:
     * refused by the plan before a single thread starts. */
    q = p;
    q.threads = ALM_MAX_THREADS;
    EXPECT(alm_engine_create(m, arena, total, &q, &e, err, sizeof err), ALM_ERR_BUDGET);
    q = p;
    q.ctx_tokens = 9000;
    EXPECT(alm_engine_create(m, arena, total, &q, &e, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "9000") != NULL && strstr(err, "8192") != NULL);
    /* Params NULL: the defaults (fill the arena, one thread). */
    EXPECT(alm_engine_create(m, arena, total, NULL, &e, err, sizeof err), ALM_OK);
    EXPECT(alm_engine_free(e), ALM_OK);
    free(arena);
}

static void engine_calls(alm_model *m, alm_engine *e, uint32_t vocab) {
    uint32_t good[2] = {1, 2};
    uint32_t bad[2] = {1, vocab};
    const float *logits = NULL;
    size_t rows = 0;
    uint32_t token = 0;

    EXPECT(alm_engine_eval(NULL, good, 1, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err),
           ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_eval(e, NULL, 1, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err),
           ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_eval(e, good, 0, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_engine_eval(e, good, 1, 2, &logits, &rows, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_engine_eval(e, good, 2, ALM_OUTPUTS_ALL, &logits, &rows, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT); /* max_outputs is 1 */
    EXPECT(alm_engine_eval(e, bad, 2, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err), ALM_ERR_TOKENIZER);
    EXPECT(alm_engine_eval(e, good, SIZE_MAX, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err),
           ALM_ERR_FULL);
    EXPECT(alm_engine_eval(e, good, 33, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err), ALM_ERR_FULL);
    EXPECT(alm_engine_eval(e, (const uint32_t *)(const void *)((const char *)good + 1), 1,
                           ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    /* Sampling before any evaluation, then NULLs. */
    EXPECT(alm_engine_sample(e, &token, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_engine_sample(NULL, &token, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_sample(e, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    /* Token ids that would poison the sampler's history. */
    EXPECT(alm_engine_accept(e, vocab), ALM_ERR_TOKENIZER);
    EXPECT(alm_engine_accept(e, UINT32_MAX), ALM_ERR_TOKENIZER);
    EXPECT(alm_engine_accept(NULL, 1), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_accept(e, vocab - 1), ALM_OK);
    EXPECT(alm_engine_reset(NULL), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_truncate(NULL, 0), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_truncate(e, SIZE_MAX), ALM_OK); /* keeps what there is */
    EXPECT(alm_engine_truncate(e, 0), ALM_OK);

    /* Sampler params: NULLs and every size. */
    EXPECT(alm_engine_set_sampler(NULL, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_set_sampler(e, NULL, err, sizeof err), ALM_OK);
    alm_sampler_params sp;
    EXPECT(alm_sampler_default_params(&sp, sizeof sp), ALM_OK);
    sp.repeat_penalty = 1.3f;
    for (size_t size = 0; size <= sizeof(alm_sampler_params) + 8; size++) {
        alm_sampler_params q = sp;
        q.size = (uint32_t)size;
        int ok = ACCEPTED(SAMPLER_PARAMS, alm_sampler_params, size);
        EXPECT(alm_engine_set_sampler(e, &q, err, sizeof err), ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
    }
    alm_sampler_params bad_sp = sp;
    bad_sp.top_p = 0.0f;
    EXPECT(alm_engine_set_sampler(e, &bad_sp, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);

    /* State and plan: NULLs and every out size. */
    EXPECT(alm_engine_get_state(NULL, (alm_engine_state *)(void *)buf), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_get_state(e, NULL), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_get_plan(NULL, (alm_memory_plan *)(void *)buf), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_get_plan(e, NULL), ALM_ERR_NULL_ARGUMENT);
    for (size_t size = 0; size <= sizeof(alm_engine_state) + 8; size++) {
        fill_pattern();
        set_buf_size_field((uint32_t)size);
        int ok = ACCEPTED(ENGINE_STATE, alm_engine_state, size);
        EXPECT(alm_engine_get_state(e, (alm_engine_state *)(void *)buf), ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        CHECK(untouched_from(ok ? min_size(size, sizeof(alm_engine_state)) : 4));
    }
    for (size_t size = 0; size <= sizeof(alm_memory_plan) + 8; size++) {
        fill_pattern();
        set_buf_size_field((uint32_t)size);
        int ok = ACCEPTED(MEMORY_PLAN, alm_memory_plan, size);
        EXPECT(alm_engine_get_plan(e, (alm_memory_plan *)(void *)buf), ok ? ALM_OK : ALM_ERR_INVALID_ARGUMENT);
        CHECK(untouched_from(ok ? min_size(size, sizeof(alm_memory_plan)) : 4));
    }

    /* A model with an engine cannot close; foreign handles are refused. */
    EXPECT(alm_model_close(m), ALM_ERR_IN_USE);
    EXPECT(alm_engine_reset((alm_engine *)(void *)m), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_model_close((alm_model *)(void *)e), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_engine_free((alm_engine *)(void *)m), ALM_ERR_BAD_HANDLE);
    int local = 0;
    alm_engine *made_up[] = {(alm_engine *)(uintptr_t)1, (alm_engine *)(uintptr_t)0x1000,
                             (alm_engine *)(void *)&local, (alm_engine *)(uintptr_t)UINTPTR_MAX};
    for (size_t i = 0; i < sizeof made_up / sizeof made_up[0]; i++) {
        EXPECT(alm_engine_eval(made_up[i], good, 1, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err),
               ALM_ERR_BAD_HANDLE);
        EXPECT(alm_engine_free(made_up[i]), ALM_ERR_BAD_HANDLE);
    }
}

static void tokenizer_calls(alm_engine *e, alm_tokenizer *tok, uint32_t vocab) {
    const char *text = "Hello, world!";
    uint32_t ids[16];
    size_t n = 0;
    char piece[32];
    int eog = 0;

    alm_tokenizer *other = (alm_tokenizer *)(uintptr_t)0x10;
    EXPECT(alm_engine_get_tokenizer(NULL, &other, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    CHECK(other == NULL);
    EXPECT(alm_engine_get_tokenizer(e, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_engine_get_tokenizer((alm_engine *)(void *)tok, &other, err, sizeof err), ALM_ERR_BAD_HANDLE);

    EXPECT(alm_tokenize(NULL, text, 13, 0, ids, 16, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenize(tok, NULL, 13, 0, ids, 16, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenize(tok, NULL, 0, 0, ids, 16, &n, err, sizeof err), ALM_OK);
    CHECK(n == 0);
    EXPECT(alm_tokenize(tok, text, 13, 0, NULL, 16, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, 13, 0, NULL, 0, &n, err, sizeof err), ALM_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 4);
    EXPECT(alm_tokenize(tok, text, 13, 0, ids, 16, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, 13, 4, ids, 16, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, 13, UINT32_MAX, ids, 16, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, SIZE_MAX, 0, ids, 16, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, 13, 0, ids, SIZE_MAX, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, 13, 0, (uint32_t *)(void *)((char *)ids + 2), 4, &n, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenize(tok, "\xff\xfe", 2, 0, ids, 16, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenize(tok, text, 13, ALM_TOKENIZE_ADD_BOS | ALM_TOKENIZE_PARSE_SPECIAL, ids, 16, &n, err,
                        sizeof err),
           ALM_OK);

    EXPECT(alm_token_to_piece(NULL, 1, 0, piece, sizeof piece, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_token_to_piece(tok, 1, 0, NULL, sizeof piece, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_token_to_piece(tok, 19556, 0, NULL, 0, &n, err, sizeof err), ALM_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    EXPECT(alm_token_to_piece(tok, 1, 0, piece, sizeof piece, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_token_to_piece(tok, vocab, 0, piece, sizeof piece, &n, err, sizeof err), ALM_ERR_TOKENIZER);
    EXPECT(alm_token_to_piece(tok, UINT32_MAX, 0, piece, sizeof piece, &n, err, sizeof err), ALM_ERR_TOKENIZER);

    EXPECT(alm_token_is_eog(NULL, 2, &eog), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_token_is_eog(tok, 2, NULL), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_token_is_eog(tok, vocab, &eog), ALM_ERR_TOKENIZER);
    EXPECT(alm_token_is_eog(tok, 2, &eog), ALM_OK);
    CHECK(eog == 1);

    alm_detok d;
    EXPECT(alm_detok_init(NULL, 0, 0), ALM_ERR_NULL_ARGUMENT);
    memset(&d, 0xFF, sizeof d);
    EXPECT(alm_detok_push(tok, &d, 19556, piece, sizeof piece, &n), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_detok_finish(&d, piece, sizeof piece, &n), ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_detok_init(&d, 0, 0), ALM_OK);
    EXPECT(alm_detok_push(NULL, &d, 19556, piece, sizeof piece, &n), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_detok_push(tok, NULL, 19556, piece, sizeof piece, &n), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_detok_push(tok, &d, 19556, NULL, sizeof piece, &n), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_detok_push(tok, &d, 19556, piece, sizeof piece, NULL), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_detok_push(tok, &d, vocab, piece, sizeof piece, &n), ALM_ERR_TOKENIZER);
    EXPECT(alm_detok_push(tok, &d, 19556, piece, sizeof piece, &n), ALM_OK);
    EXPECT(alm_detok_finish(NULL, piece, sizeof piece, &n), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_detok_finish(&d, piece, sizeof piece, NULL), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_detok_finish(&d, piece, sizeof piece, &n), ALM_OK);

    alm_chat_message msgs[2];
    msgs[0].role = ALM_ROLE_USER;
    msgs[0].content = "Hi";
    msgs[0].content_len = 2;
    msgs[1] = msgs[0];
    char out[512];
    EXPECT(alm_chat_format(NULL, msgs, 1, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_chat_format(tok, NULL, 1, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_chat_format(tok, NULL, 0, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_OK);
    EXPECT(alm_chat_format(tok, msgs, 1, 1, NULL, NULL, sizeof out, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_chat_format(tok, msgs, 1, 1, NULL, out, sizeof out, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_chat_format(tok, msgs, SIZE_MAX, 1, NULL, out, sizeof out, &n, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_chat_format(tok, msgs, 1, 1, "no-such-family", out, sizeof out, &n, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_chat_format(tok, msgs, 2, 1, "chatml", out, sizeof out, &n, err, sizeof err), ALM_OK);
    msgs[1].role = 3;
    EXPECT(alm_chat_format(tok, msgs, 2, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);
    msgs[1].role = ALM_ROLE_ASSISTANT;
    msgs[1].content = NULL;
    EXPECT(alm_chat_format(tok, msgs, 2, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    msgs[1].content_len = 0;
    EXPECT(alm_chat_format(tok, msgs, 2, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_OK);
    msgs[1].content = "\xc3";
    msgs[1].content_len = 1;
    EXPECT(alm_chat_format(tok, msgs, 2, 1, NULL, out, sizeof out, &n, err, sizeof err), ALM_ERR_INVALID_ARGUMENT);

    /* A tokenizer handle is not an engine handle, and the other way round. */
    EXPECT(alm_engine_reset((alm_engine *)(void *)tok), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_token_is_eog((alm_tokenizer *)(void *)e, 2, &eog), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_tokenizer_free((alm_tokenizer *)(void *)e), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_tokenizer_free((alm_tokenizer *)(uintptr_t)0x20), ALM_ERR_BAD_HANDLE);
}

static void standalone_tokenizer(const uint8_t *bytes, size_t len) {
    size_t need = 0;
    alm_tokenizer *t = (alm_tokenizer *)(uintptr_t)0x10;
    EXPECT(alm_tokenizer_arena_bytes(NULL, len, &need, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenizer_arena_bytes(bytes, len, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenizer_arena_bytes(bytes, 100, &need, err, sizeof err), ALM_ERR_GGUF);
    EXPECT(alm_tokenizer_arena_bytes(bytes, len, &need, err, sizeof err), ALM_OK);
    unsigned char *arena = aligned_arena(need + 64);
    EXPECT(alm_tokenizer_create(NULL, len, arena, need, &t, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    CHECK(t == NULL);
    EXPECT(alm_tokenizer_create(bytes, len, NULL, need, &t, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenizer_create(bytes, len, arena, need, NULL, err, sizeof err), ALM_ERR_NULL_ARGUMENT);
    EXPECT(alm_tokenizer_create(bytes, len, arena, need - 1, &t, err, sizeof err), ALM_ERR_BUDGET);
    EXPECT(alm_tokenizer_create(bytes, len, arena + 1, need, &t, err, sizeof err), ALM_ERR_BUDGET);
    EXPECT(alm_tokenizer_create(bytes, len, (void *)(uintptr_t)bytes, need, &t, err, sizeof err),
           ALM_ERR_INVALID_ARGUMENT);
    EXPECT(alm_tokenizer_create(bytes, len, arena + 1, need + 63, &t, err, sizeof err), ALM_OK);
    int eog = 0;
    EXPECT(alm_token_is_eog(t, 2, &eog), ALM_OK);
    CHECK(eog == 1);
    EXPECT(alm_engine_reset((alm_engine *)(void *)t), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_tokenizer_free(t), ALM_OK);
    EXPECT(alm_tokenizer_free(t), ALM_ERR_BAD_HANDLE); /* double free */
    EXPECT(alm_token_is_eog(t, 2, &eog), ALM_ERR_BAD_HANDLE); /* use after free */
    free(arena);
}

static void handle_table_limit(const uint8_t *bytes, size_t len) {
    alm_model *models[ALM_MAX_MODELS + 1];
    size_t opened = 0;
    alm_status s = ALM_OK;
    while (opened <= ALM_MAX_MODELS) {
        s = alm_model_open_bytes(bytes, len, &models[opened], err, sizeof err);
        if (s != ALM_OK) break;
        opened++;
    }
    EXPECT(s, ALM_ERR_FULL);
    CHECK(opened >= 1 && opened < ALM_MAX_MODELS);
    for (size_t i = 0; i < opened; i++) EXPECT(alm_model_close(models[i]), ALM_OK);
    for (size_t i = 0; i < opened; i++) EXPECT(alm_model_close(models[i]), ALM_ERR_BAD_HANDLE);
}

static void busy_from_own_parallel_for(alm_model *m) {
    alm_engine_params p = defaults();
    p.ctx_tokens = 16;
    p.threads = 2;
    p.parallel_for = reentrant_parallel_for;
    alm_memory_plan plan = plan_out();
    EXPECT(alm_plan(m, &p, &plan, err, sizeof err), ALM_OK);
    void *arena = aligned_arena((size_t)plan.total_bytes);
    alm_engine *e = NULL;
    EXPECT(alm_engine_create(m, arena, (size_t)plan.total_bytes, &p, &e, err, sizeof err), ALM_OK);
    abuse_engine_for_callback = e;
    uint32_t t = 1;
    EXPECT(alm_engine_eval(e, &t, 1, ALM_OUTPUTS_LAST, NULL, NULL, err, sizeof err), ALM_OK);
    CHECK(callback_calls > 0);
    EXPECT(callback_status, ALM_ERR_BUSY);
    EXPECT(alm_engine_free(e), ALM_OK);
    free(arena);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "cannot open %s\n", path);
        return 2;
    }
    size_t len = (size_t)st.st_size;
    const uint8_t *bytes = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (bytes == MAP_FAILED) {
        fprintf(stderr, "cannot map %s\n", path);
        return 2;
    }

    static_strings();
    default_params_sizes();

    alm_model *m = NULL;
    EXPECT(alm_model_open_file(path, &m, err, sizeof err), ALM_OK);
    alm_model *mb = NULL;
    EXPECT(alm_model_open_bytes(bytes, len, &mb, err, sizeof err), ALM_OK);
    if (m == NULL || mb == NULL) {
        fprintf(stderr, "cannot open the model: %s\n", err);
        return 1;
    }
    model_calls(path, bytes, len, m);
    plan_calls(m);
    whatif_calls();
    create_calls(m, bytes, mb);
    handle_table_limit(bytes, len);
    busy_from_own_parallel_for(m);

    /* One engine for the rest. */
    alm_engine_params p = defaults();
    p.ctx_tokens = 32;
    alm_memory_plan plan = plan_out();
    EXPECT(alm_plan(m, &p, &plan, err, sizeof err), ALM_OK);
    void *arena = aligned_arena((size_t)plan.total_bytes);
    alm_engine *e = NULL;
    EXPECT(alm_engine_create(m, arena, (size_t)plan.total_bytes, &p, &e, err, sizeof err), ALM_OK);
    alm_tokenizer *tok = NULL;
    EXPECT(alm_engine_get_tokenizer(e, &tok, err, sizeof err), ALM_OK);
    const uint32_t vocab = 49152;
    engine_calls(m, e, vocab);
    tokenizer_calls(e, tok, vocab);
    standalone_tokenizer(bytes, len);

    /* After all that, the engine still works: every refused call changed nothing. */
    alm_engine_state state;
    memset(&state, 0, sizeof state);
    state.size = sizeof state;
    EXPECT(alm_engine_get_state(e, &state), ALM_OK);
    CHECK(state.n_past == 0 && state.ctx_capacity == 32 && state.arena_used == plan.total_bytes);
    uint32_t prompt[3] = {1, 9690, 28};
    const float *logits = NULL;
    size_t rows = 0;
    EXPECT(alm_engine_eval(e, prompt, 3, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err), ALM_OK);
    CHECK(rows == 1 && logits != NULL);
    uint32_t next = UINT32_MAX;
    EXPECT(alm_engine_sample(e, &next, err, sizeof err), ALM_OK);
    CHECK(next < vocab);

    /* Free: the tokenizer dies with its engine; double free; use after free. */
    EXPECT(alm_tokenizer_free(tok), ALM_OK); /* a view: nothing to free */
    EXPECT(alm_engine_free(e), ALM_OK);
    EXPECT(alm_engine_free(e), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_engine_eval(e, prompt, 1, ALM_OUTPUTS_LAST, &logits, &rows, err, sizeof err), ALM_ERR_BAD_HANDLE);
    CHECK(strstr(err, "already freed") != NULL);
    int eog = 0;
    EXPECT(alm_token_is_eog(tok, 2, &eog), ALM_ERR_BAD_HANDLE);
    size_t n = 0;
    uint32_t ids[4];
    EXPECT(alm_tokenize(tok, "Hi", 2, 0, ids, 4, &n, err, sizeof err), ALM_ERR_BAD_HANDLE);
    CHECK(strstr(err, "engine that was freed") != NULL);
    EXPECT(alm_tokenizer_free(tok), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_engine_free(NULL), ALM_OK);
    EXPECT(alm_tokenizer_free(NULL), ALM_OK);

    /* The same arena again: the old handle stays dead, the new one works. */
    alm_engine *e2 = NULL;
    EXPECT(alm_engine_create(m, arena, (size_t)plan.total_bytes, &p, &e2, err, sizeof err), ALM_OK);
    CHECK(e2 != e);
    EXPECT(alm_engine_reset(e), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_engine_reset(e2), ALM_OK);
    EXPECT(alm_engine_free(e2), ALM_OK);
    free(arena);

    /* Close: use after close, double close. */
    EXPECT(alm_model_close(m), ALM_OK);
    EXPECT(alm_model_close(m), ALM_ERR_BAD_HANDLE);
    alm_model_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    EXPECT(alm_model_get_info(m, &info, NULL, 0, err, sizeof err), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_plan(m, &p, &plan, err, sizeof err), ALM_ERR_BAD_HANDLE);
    EXPECT(alm_model_close(mb), ALM_OK);
    EXPECT(alm_model_close(NULL), ALM_OK);
    munmap((void *)(uintptr_t)bytes, len);

    printf("abuse: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
