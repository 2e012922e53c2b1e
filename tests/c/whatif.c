/*
 * whatif: what-if sizing from C with alm_plan_arch, no model file needed.
 * Describes three public architectures by their config.json sizes and
 * prints one line of numbers per question, "name key=value ...", which
 * tests/tests/c_programs.rs compares with `arenalm plan --config` and with
 * numbers worked out by hand.
 *
 *   whatif
 *
 * Exits 1 if a call fails (the message is printed).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "arenalm.h"

static int failed = 0;

static void report(const char *name, const alm_arch *arch, const alm_whatif_params *params) {
    alm_arch_plan out;
    char err[256];
    memset(&out, 0, sizeof out);
    out.size = sizeof out;
    alm_status s = alm_plan_arch(arch, params, &out, err, sizeof err);
    if (s != ALM_OK) {
        fprintf(stderr, "%s: %s: %s\n", name, alm_status_str(s), err);
        failed = 1;
        return;
    }
    printf("%s params_total=%llu params_active=%llu weights_resident_bytes=%llu "
           "weights_read_per_token_bytes=%llu kv_bytes_per_token=%llu kv_bytes=%llu "
           "shard_params_total=%llu shard_weights_resident_bytes=%llu shard_kv_bytes=%llu "
           "shard_scratch_bytes=%llu shard_total_bytes=%llu\n",
           name, (unsigned long long)out.params_total, (unsigned long long)out.params_active,
           (unsigned long long)out.weights_resident_bytes,
           (unsigned long long)out.weights_read_per_token_bytes,
           (unsigned long long)out.kv_bytes_per_token, (unsigned long long)out.kv_bytes,
           (unsigned long long)out.shard_params_total,
           (unsigned long long)out.shard_weights_resident_bytes,
           (unsigned long long)out.shard_kv_bytes, (unsigned long long)out.shard_scratch_bytes,
           (unsigned long long)out.shard_total_bytes);
}

static alm_arch arch_defaults(void) {
    alm_arch a;
    memset(&a, 0, sizeof a);
    if (alm_arch_default_params(&a, sizeof a) != ALM_OK) {
        fprintf(stderr, "alm_arch_default_params failed\n");
        failed = 1;
    }
    return a;
}

static alm_whatif_params params_defaults(void) {
    alm_whatif_params p;
    memset(&p, 0, sizeof p);
    if (alm_whatif_default_params(&p, sizeof p) != ALM_OK) {
        fprintf(stderr, "alm_whatif_default_params failed\n");
        failed = 1;
    }
    return p;
}

int main(void) {
    /* Llama 3.1 8B, Q8_0 weights (GGUF type 8), 8192 tokens. */
    alm_arch llama = arch_defaults();
    llama.n_layers = 32;
    llama.dim = 4096;
    llama.n_heads = 32;
    llama.n_kv_heads = 8;
    llama.head_dim = 128;
    llama.ffn_dim = 14336;
    llama.vocab = 128256;
    alm_whatif_params p = params_defaults();
    p.weight_type = 8;
    p.ctx_tokens = 8192;
    p.threads = 1;
    report("llama-3.1-8b", &llama, &p);

    /* Gemma 3 270M: 4 norms and q/k norms per layer, tied, 15 of 18 layers
       sliding over 512 tokens; F16 weights, 32768 tokens. */
    alm_arch gemma = arch_defaults();
    gemma.n_layers = 18;
    gemma.dim = 640;
    gemma.n_heads = 4;
    gemma.n_kv_heads = 1;
    gemma.head_dim = 256;
    gemma.ffn_dim = 2048;
    gemma.vocab = 262144;
    gemma.tied_embeddings = 1;
    gemma.norms_per_layer = 4;
    gemma.qk_norm = 1;
    gemma.sliding_window = 512;
    gemma.n_sliding_layers = 15;
    p = params_defaults();
    p.ctx_tokens = 32768;
    p.threads = 1;
    report("gemma-3-270m", &gemma, &p);

    /* DeepSeek-V3: latent attention and 256 experts (8 active, 1 shared,
       3 dense layers first), F16 weights, 4096 tokens, 8 shards. */
    alm_arch ds = arch_defaults();
    ds.n_layers = 61;
    ds.dim = 7168;
    ds.n_heads = 128;
    ds.n_kv_heads = 128;
    ds.ffn_dim = 18432;
    ds.vocab = 129280;
    ds.kv_lora_rank = 512;
    ds.q_lora_rank = 1536;
    ds.qk_nope_head_dim = 128;
    ds.qk_rope_head_dim = 64;
    ds.v_head_dim = 128;
    ds.n_experts = 256;
    ds.n_active = 8;
    ds.expert_ffn_dim = 2048;
    ds.n_shared = 1;
    ds.n_dense_layers = 3;
    ds.router_bias = 1;
    p = params_defaults();
    p.ctx_tokens = 4096;
    p.tensor_parallel = 8;
    p.threads = 1;
    report("deepseek-v3", &ds, &p);

    /* An inconsistent architecture is refused, naming the field. */
    ds.n_active = 300;
    alm_arch_plan out;
    char err[256];
    memset(&out, 0, sizeof out);
    out.size = sizeof out;
    alm_status s = alm_plan_arch(&ds, &p, &out, err, sizeof err);
    printf("refused status=%d message=%s\n", (int)s, err);
    return failed;
}
