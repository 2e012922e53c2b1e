// A C++ program that includes the header and calls the library: it prints
// the version and checks that the header's macros agree with the library.
#include <cstdio>
#include <cstring>
#include <string>

#include "arenalm.h"

int main() {
    const std::string lib = alm_version();
    std::printf("arenalm %s (header %s)\n", lib.c_str(), ALM_VERSION_STRING);
    if (lib != ALM_VERSION_STRING) {
        std::fprintf(stderr, "header and library versions differ\n");
        return 1;
    }
    // A NULL model is refused with a status, not a crash.
    alm_model *model = nullptr;
    char err[128] = {0};
    alm_status s = alm_model_open_bytes(nullptr, 0, &model, err, sizeof err);
    std::printf("open(NULL): %s: %s\n", alm_status_str(s), err);
    return s == ALM_ERR_NULL_ARGUMENT && model == nullptr ? 0 : 1;
}
