// Dev-time probe (not part of arenalm): llama.cpp's top-1 / top-2 margin at
// every prompt position, and its greedy continuation with margins, for a
// given thread count and flash-attention setting.
// usage: probe MODEL THREADS FA(0/1) N_GREEDY id id id ...
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <vector>
static void top2(const float * l, int n, int & best, float & margin) {
    int a = 0, b = -1;
    for (int i = 1; i < n; i++) { if (l[i] > l[a]) { b = a; a = i; } else if (b < 0 || l[i] > l[b]) b = i; }
    best = a; margin = l[a] - l[b];
}
int main(int argc, char ** argv) {
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    auto cp = llama_context_default_params();
    cp.n_ctx = 512; cp.n_batch = 512; cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = atoi(argv[2]);
    cp.flash_attn_type = atoi(argv[3]) ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    int n_greedy = atoi(argv[4]);
    llama_context * ctx = llama_init_from_model(model, cp);
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(model));
    std::vector<llama_token> ids;
    for (int i = 5; i < argc; i++) ids.push_back(atoi(argv[i]));
    llama_batch b = llama_batch_init(ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) { b.token[i] = ids[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1; }
    b.n_tokens = ids.size();
    if (llama_decode(ctx, b)) return 3;
    printf("prompt");
    for (size_t i = 0; i < ids.size(); i++) { int t; float m; top2(llama_get_logits_ith(ctx, i), nv, t, m); printf(" %d:%.4f", t, m); }
    printf("\ngreedy");
    int t; float m; top2(llama_get_logits_ith(ctx, ids.size() - 1), nv, t, m);
    int pos = ids.size();
    for (int s = 0; s < n_greedy; s++) {
        printf(" %d:%.4f", t, m);
        llama_token tok = t;
        llama_batch one = llama_batch_get_one(&tok, 1);
        if (llama_decode(ctx, one)) return 4;
        top2(llama_get_logits_ith(ctx, -1), nv, t, m);
        pos++;
    }
    printf("\n");
    return 0;
}
