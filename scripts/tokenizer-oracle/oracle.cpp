// Reads NUL-separated UTF-8 strings from stdin; for each prints two lines:
// ids without and with special parsing (no BOS), space separated.
#include "llama.h"
#include <cstdio>
#include <string>
#include <vector>
#include <iostream>
#include <iterator>
int main(int argc, char ** argv) {
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    const llama_vocab * vocab = llama_model_get_vocab(model);
    std::string all((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    while (pos <= all.size()) {
        size_t end = all.find('\0', pos);
        if (end == std::string::npos) break;
        std::string s = all.substr(pos, end - pos);
        for (int sp = 0; sp < 2; sp++) {
            std::vector<llama_token> ids(s.size() * 2 + 16);
            int n = llama_tokenize(vocab, s.data(), s.size(), ids.data(), ids.size(), false, sp == 1);
            if (n < 0) { ids.resize(-n); n = llama_tokenize(vocab, s.data(), s.size(), ids.data(), ids.size(), false, sp == 1); }
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
        pos = end + 1;
    }
    return 0;
}
