// Dev-time probe (not part of arenalm): evaluates token ids in one batch with
// llama.cpp and writes the last position's logits (f32 LE) to a file.
// usage: dump MODEL THREADS FA(0/1/-1) OUT.f32 id id id ...
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <vector>
int main(int argc, char ** argv) {
    if (argc < 6) return 2;
    llama_backend_init();
    auto mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    auto cp = llama_context_default_params();
    cp.n_ctx = 512; cp.n_batch = 512; cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = atoi(argv[2]);
    int fa = atoi(argv[3]);
    cp.flash_attn_type = fa == 1 ? LLAMA_FLASH_ATTN_TYPE_ENABLED : fa == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
    llama_context * ctx = llama_init_from_model(model, cp);
    std::vector<llama_token> ids;
    for (int i = 5; i < argc; i++) ids.push_back(atoi(argv[i]));
    llama_batch b = llama_batch_get_one(ids.data(), ids.size());
    if (llama_decode(ctx, b)) return 3;
    const float * l = llama_get_logits_ith(ctx, -1);
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE * f = fopen(argv[4], "wb"); fwrite(l, 4, nv, f); fclose(f);
    return 0;
}
