/*
 * chat: a two-turn conversation through the C API, greedy.
 *
 *   chat MODEL.gguf "first message" "second message"
 *
 * Each turn formats the conversation with the model's chat template
 * (alm_chat_format), evaluates only the text not already in the KV cache,
 * and streams the reply until an end-of-generation token. The arena is
 * sized by the planner for a 1024-token context and allocated once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arenalm.h"

#define MAX_TEXT 16384
#define MAX_IDS 2048
#define MAX_REPLY 200

static char formatted[MAX_TEXT];
static char in_cache[MAX_TEXT]; /* the text whose tokens are in the KV cache */
static char replies[2][MAX_TEXT];
static uint32_t ids[MAX_IDS];

static int fail(const char *what, const char *err) {
    fprintf(stderr, "%s: %s\n", what, err);
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf MESSAGE1 MESSAGE2\n", argv[0]);
        return 1;
    }
    char err[256];
    alm_model *model = NULL;
    if (alm_model_open_file(argv[1], &model, err, sizeof err) != ALM_OK) return fail("open", err);

    /* One parameter struct plans the arena and creates the engine in it. */
    alm_engine_params p;
    alm_engine_default_params(&p, sizeof p);
    p.ctx_tokens = 1024;
    alm_memory_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.size = sizeof plan;
    if (alm_plan(model, &p, &plan, err, sizeof err) != ALM_OK) return fail("plan", err);
    size_t arena_len = (size_t)(plan.total_bytes + 63) / 64 * 64;
    void *arena = aligned_alloc(64, arena_len);
    if (!arena) return fail("arena", "out of memory");

    alm_engine *engine = NULL;
    if (alm_engine_create(model, arena, arena_len, &p, &engine, err, sizeof err) != ALM_OK) return fail("engine", err);
    alm_tokenizer *tok = NULL;
    if (alm_engine_get_tokenizer(engine, &tok, err, sizeof err) != ALM_OK) return fail("tokenizer", err);
    alm_sampler_params sp;
    alm_sampler_default_params(&sp, sizeof sp);
    sp.temperature = 0.0f;
    alm_engine_set_sampler(engine, &sp, NULL, 0);

    alm_chat_message msgs[4];
    size_t n_msgs = 0;
    size_t cached = 0;
    for (int turn = 0; turn < 2; turn++) {
        const char *user = argv[2 + turn];
        msgs[n_msgs].role = ALM_ROLE_USER;
        msgs[n_msgs].content = user;
        msgs[n_msgs].content_len = strlen(user);
        n_msgs++;
        size_t n = 0;
        if (alm_chat_format(tok, msgs, n_msgs, 1, NULL, formatted, MAX_TEXT - 1, &n, err, sizeof err) != ALM_OK)
            return fail("format", err);
        formatted[n] = 0;
        if (n < cached || memcmp(formatted, in_cache, cached) != 0) return fail("format", "history changed");
        size_t n_ids = 0;
        uint32_t flags = ALM_TOKENIZE_PARSE_SPECIAL | (cached == 0 ? ALM_TOKENIZE_ADD_BOS : 0);
        if (alm_tokenize(tok, formatted + cached, n - cached, flags, ids, MAX_IDS, &n_ids, err, sizeof err) != ALM_OK)
            return fail("tokenize", err);
        if (alm_engine_eval(engine, ids, n_ids, ALM_OUTPUTS_LAST, NULL, NULL, err, sizeof err) != ALM_OK)
            return fail("eval", err);
        memcpy(in_cache, formatted, n);
        cached = n;

        printf("user: %s\nassistant: ", user);
        alm_detok detok;
        alm_detok_init(&detok, 0, 0);
        size_t reply_len = 0;
        for (int i = 0; i < MAX_REPLY; i++) {
            uint32_t t;
            if (alm_engine_sample(engine, &t, err, sizeof err) != ALM_OK) return fail("sample", err);
            int eog = 0;
            alm_token_is_eog(tok, t, &eog);
            if (eog) break;
            size_t k = 0;
            if (alm_detok_push(tok, &detok, t, replies[turn] + reply_len, MAX_TEXT - 1 - reply_len, &k) != ALM_OK)
                return fail("detokenize", "reply too long");
            fwrite(replies[turn] + reply_len, 1, k, stdout);
            fflush(stdout);
            reply_len += k;
            if (alm_engine_eval(engine, &t, 1, ALM_OUTPUTS_LAST, NULL, NULL, err, sizeof err) != ALM_OK)
                return fail("eval", err);
        }
        size_t k = 0;
        alm_detok_finish(&detok, replies[turn] + reply_len, MAX_TEXT - 1 - reply_len, &k);
        reply_len += k;
        printf("\n");
        /* The cache holds the reply after the assistant opener. */
        if (cached + reply_len >= MAX_TEXT) return fail("chat", "conversation too long");
        memcpy(in_cache + cached, replies[turn], reply_len);
        cached += reply_len;
        msgs[n_msgs].role = ALM_ROLE_ASSISTANT;
        msgs[n_msgs].content = replies[turn];
        msgs[n_msgs].content_len = reply_len;
        n_msgs++;
    }
    alm_engine_state st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    alm_engine_get_state(engine, &st);
    printf("context: %llu of %llu tokens\n", (unsigned long long)st.n_past, (unsigned long long)st.ctx_capacity);
    alm_tokenizer_free(tok); /* an engine's tokenizer: nothing to free, accepted */
    if (alm_engine_free(engine) != ALM_OK) return fail("free", "engine");
    free(arena);
    return alm_model_close(model) == ALM_OK ? 0 : 2;
}
