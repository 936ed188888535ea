/* test_cli.c — the `brisk` command line: unknown commands and options and bad
 * values are refused with a message naming them, --stats starts its own
 * line, bench and replay write under the ignored results/ folder by default,
 * and scripts/deps.sh waits for another apt's lock.  (Serving on a host name
 * is in tests/server_test.py, which runs servers.) */
#include "t.h"
#include "eng.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BRISK "build/brisk"
#define MODEL "tests/fixtures/tiny-qwen2"

/* Runs cmd through sh with stderr joined to stdout; returns the exit status
 * (-1 when it did not exit) and the output in out. */
static int run(const char *cmd, char *out, size_t cap) {
    char full[4200];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = 0;
    out[0] = 0;
    if (!p) return -1;
    while (n + 1 < cap) {
        size_t k = fread(out + n, 1, cap - 1 - n, p);
        if (!k) break;
        n += k;
    }
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* cmd fails with status 2 and says `want` (a server that starts instead is
 * stopped after 10 s). */
static void refused(const char *cmd, const char *want) {
    char out[8192], full[1200];
    snprintf(full, sizeof full, "timeout 10 %s", cmd);
    int rc = run(full, out, sizeof out);
    T_CHECKF(rc == 2 && strstr(out, want), "`%s`: exit %d, wanted '%s' in: %.300s", cmd, rc, want, out);
}

/* bench_cuda --tp: bad values refused in every build (the arguments are read
 * first); a split asked of a build without CUDA refused, naming what it needs;
 * a plain run there still only says it was built without CUDA. */
#define BENCH_CUDA "build/benchmarks/bench_cuda"
static void test_bench_cuda_tp(void) {
    refused(BENCH_CUDA " " MODEL " --tp 0", "--tp takes 1 to 64 GPUs, not 0");
    refused(BENCH_CUDA " " MODEL " --tp two", "--tp takes 1 to 64 GPUs, not two");
    refused(BENCH_CUDA " " MODEL " --tp 2x", "not 2x");
    refused(BENCH_CUDA " " MODEL " --tp 65", "not 65");
    refused(BENCH_CUDA " " MODEL " --tp", "unknown argument --tp");
    refused(BENCH_CUDA " " MODEL " --tp 2 --quant", "--tp 2 takes none of --quant");
    refused(BENCH_CUDA " " MODEL " --tp 2 --bf16-weights", "takes none of");
    refused(BENCH_CUDA " " MODEL " --tp 4 --kernels", "takes none of");
    refused(BENCH_CUDA " --tp 2", "usage: bench_cuda MODEL_DIR");
    refused(BENCH_CUDA " " MODEL " --quant-wide 3", "--quant-wide takes 0, 1 or 2, not 3");
    refused(BENCH_CUDA " " MODEL " --quant-wide", "unknown argument --quant-wide");
#ifndef BRISK_CUDA
    refused(BENCH_CUDA " " MODEL " --tp 2", "--tp 2 needs a CUDA build with NCCL");
    char out[1024];
    int rc = run(BENCH_CUDA " " MODEL " --tp 1", out, sizeof out);
    T_CHECKF(rc == 0 && strstr(out, "built without CUDA"), "--tp 1: exit %d: %s", rc, out);
#endif
}

static void test_bad_values(void) {
    refused(BRISK " serve --model " MODEL " --port 99999", "--port must be an integer from 0 to 65535 (got '99999')");
    refused(BRISK " serve --model " MODEL " --port abc", "--port must be an integer from 0 to 65535 (got 'abc')");
    refused(BRISK " serve --model " MODEL " --port 80x", "(got '80x')");
    refused(BRISK " serve --model " MODEL " --max-tokens-cap 0", "--max-tokens-cap must be");
    refused(BRISK " generate --model " MODEL " --prompt hi --max-tokens abc",
            "--max-tokens must be an integer from 1 to");
    refused(BRISK " generate --model " MODEL " --prompt hi --max-tokens 2.7", "(got '2.7')");
    refused(BRISK " generate --model " MODEL " --prompt hi --temperature 99",
            "--temperature must be a number from 0 to 5 (got '99')");
    refused(BRISK " generate --model " MODEL " --prompt hi --seed -3", "--seed must be");
    refused(BRISK " replay parallelprompt x.json --limit many", "--limit must be an integer");
    refused(BRISK " bench math500 --model " MODEL " --max-tokens 2.7", "--max-tokens must be an integer");
    refused(BRISK " bench math500 --model " MODEL " --bogus 1", "unknown option --bogus");
    refused(BRISK " mkmodel --preset qwen2.5-0.5b --out /tmp/x --seed z", "--seed must be");
    refused(BRISK " generate --model " MODEL " --prompt hi --kv fp8", "--kv must be f32 or bf16 (got 'fp8')");
    refused(BRISK " serve --model " MODEL " --kv BF16", "--kv must be f32 or bf16 (got 'BF16')");
    refused(BRISK " replay parallelprompt x.json --kv f16", "--kv must be f32 or bf16 (got 'f16')");
    refused(BRISK " bench math500 --model " MODEL " --kv 16", "--kv must be f32 or bf16 (got '16')");
    refused(BRISK " generate --model " MODEL " --prompt hi --act q8", "--act must be auto, f32, q16 or bf16 (got 'q8')");
    {   /* the fixture's products are not of quantized blocks: the engine refuses (exit 1) */
        char out[8192];
        int rc = run("timeout 10 " BRISK " generate --model " MODEL " --prompt hi --act q16", out, sizeof out);
        T_CHECKF(rc == 1 && strstr(out, "--act q16 needs every layer product"), "exit %d: %.300s", rc, out);
        /* bf16 inputs: taken on the CPU; one rank */
        rc = run("timeout 20 " BRISK " generate --model " MODEL " --prompt hi --act bf16 --max-tokens 3", out,
                 sizeof out);
        T_CHECKF(rc == 0, "--act bf16: exit %d: %.300s", rc, out);
        rc = run("timeout 10 " BRISK " generate --model " MODEL " --prompt hi --act bf16 --tp 2", out, sizeof out);
        T_CHECKF(rc == 1 && strstr(out, "--act bf16 runs on one rank"), "--act bf16 --tp 2: exit %d: %.300s", rc, out);
    }
    /* --tp: one parser (eng_opts_arg) for every command that makes an engine */
    refused(BRISK " generate --model " MODEL " --prompt hi --tp 0", "--tp must be an integer from 1 to 64 (got '0')");
    refused(BRISK " serve --model " MODEL " --tp two", "--tp must be an integer from 1 to 64 (got 'two')");
    refused(BRISK " replay parallelprompt x.json --tp 65", "--tp must be an integer from 1 to 64");
    refused(BRISK " bench math500 --model " MODEL " --tp", "--tp must be an integer from 1 to 64 (got 'nothing')");
}

/* generate --tp 2 (the CPU split over two ranks) writes the greedy text of
 * the unsplit model; a split the model's heads do not allow is refused. */
static void test_tp(void) {
    char one[4096], two[4096], bad[4096];
    int rc1 = run(BRISK " generate --model " MODEL " --prompt 'The quick' --max-tokens 24", one, sizeof one);
    int rc2 = run(BRISK " generate --model " MODEL " --prompt 'The quick' --max-tokens 24 --tp 2", two,
                  sizeof two);
    T_CHECKF(rc1 == 0 && rc2 == 0 && !strcmp(one, two) && one[0], "exit %d / %d:\n%s\n--\n%s", rc1, rc2,
             one, two);
    int rc3 = run(BRISK " generate --model " MODEL " --prompt hi --tp 3", bad, sizeof bad);
    T_CHECKF(rc3 != 0 && strstr(bad, "cannot split 4 attention heads over 3 ranks"), "exit %d: %s", rc3, bad);
}

static void test_unknown(void) {
    refused(BRISK " frob", "unknown command 'frob'");
    refused(BRISK " generate --model " MODEL " --prompt hi --bogus", "unknown option '--bogus'");
    refused(BRISK " serve --model " MODEL " --bogus 1", "unknown option '--bogus'");
    refused(BRISK " serve --model " MODEL " --port", "--port needs a value");
    refused(BRISK " replay parallelprompt x.json --bogus 1", "unknown option '--bogus'");
    refused(BRISK " replay frob", "the only replay is 'parallelprompt FILE.json' (got 'frob')");
    refused(BRISK " mkmodel --preset nope --out /tmp/x", "unknown preset 'nope'");
    refused(BRISK " mkmodel --preset qwen2.5-0.5b --format q3 --out /tmp/x", "unknown format 'q3'");
    refused(BRISK " mkmodel --preset qwen2.5-0.5b --out /tmp/x --what 1", "unknown option '--what'");
    refused(BRISK " grade --bogus", "unknown option '--bogus'");
    char out[4096];
    int rc = run("timeout 10 " BRISK " serve --model " MODEL " --host nosuch.invalid --port 0", out, sizeof out);
    T_CHECKF(rc == 1 && strstr(out, "cannot use host 'nosuch.invalid'"), "exit %d: %s", rc, out);
}

/* The stats line goes to stderr after the text on stdout: it must start a
 * line of its own even when both go to one pipe. */
static void test_stats_line(void) {
    char out[8192];
    int rc = run(BRISK " generate --model " MODEL " --prompt 'The quick' --max-tokens 6 --stats", out, sizeof out);
    T_CHECKF(rc == 0 && (!strncmp(out, "prompt ", 7) || strstr(out, "\nprompt ")), "exit %d: %s", rc, out);
    /* it names the KV format, whose bytes per token follow it */
    const eng_config *c = NULL;
    eng_model *m = NULL;
    T_CHECK(eng_model_load(MODEL, &m, NULL) == ENG_OK && (c = eng_model_config(m)));
    if (!c) return;
    char want[96];
    rc = run(BRISK " generate --model " MODEL " --prompt 'The quick' --max-tokens 2 --stats --kv bf16", out,
             sizeof out);
    snprintf(want, sizeof want, "; CPU; KV bf16, %d bytes/token; weights dense; activations f32",
             c->n_layers * 2 * c->n_kv_heads * c->head_dim * 2);
    T_CHECKF(rc == 0 && strstr(out, want), "exit %d, wanted '%s' in: %s", rc, want, out);
    /* --quant asks for the blocks the CPU backend cannot read: refused */
    rc = run(BRISK " generate --model " MODEL " --prompt 'The quick' --max-tokens 2 --quant", out, sizeof out);
    T_CHECKF(rc != 0 && strstr(out, "--quant"), "exit %d: %s", rc, out);
    rc = run(BRISK " generate --model " MODEL " --prompt 'The quick' --max-tokens 2 --quant-lean", out, sizeof out);
    T_CHECKF(rc != 0 && strstr(out, "--quant-lean"), "exit %d: %s", rc, out);
    eng_model_free(m);
}

/* Without --out, bench and replay write under results/ (ignored by git),
 * never into the tracked benchmarks/results. */
static void test_default_outputs(void) {
    char dir[] = "/tmp/brisk_cli_XXXXXX", cmd[4096], out[16384], path[256];
    T_CHECK(mkdtemp(dir) != NULL);
    char cwd[1024];
    T_CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(path, sizeof path, "%s/pp_rows.json", dir);
    FILE *f = fopen(path, "w");
    T_CHECK(f != NULL);
    if (!f) return;
    fputs("[{\"original\": \"Translate each word to French:\\n1. cat\\n2. dog\", \"serial\": \"x\"}]\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    f = fopen(path, "w");
    T_CHECK(f != NULL);
    if (!f) return;
    fputs("{\"problem\": \"What is 1+1?\", \"answer\": \"2\", \"unique_id\": \"a\"}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd %s && %s/" BRISK " replay parallelprompt pp_rows.json", dir, cwd);
    int rc = run(cmd, out, sizeof out);
    struct stat st;
    snprintf(path, sizeof path, "%s/results/pp_pp_rows.json", dir);
    T_CHECKF(rc == 0 && stat(path, &st) == 0, "replay exit %d, %s: %.400s", rc, path, out);
    snprintf(path, sizeof path, "%s/benchmarks", dir);
    T_CHECKF(stat(path, &st) != 0, "replay wrote under %s", path);
    snprintf(cmd, sizeof cmd, "cd %s && %s/" BRISK " bench math500 --model %s/" MODEL " --data m.jsonl "
             "--limit 1 --n 1 --budgets 1 --max-tokens 4 --quiet", dir, cwd, cwd);
    rc = run(cmd, out, sizeof out);
    snprintf(path, sizeof path, "%s/results/math500.json", dir);
    T_CHECKF(rc == 0 && stat(path, &st) == 0, "bench exit %d, %s: %.400s", rc, path, out);
    snprintf(path, sizeof path, "%s/benchmarks", dir);
    T_CHECKF(stat(path, &st) != 0, "bench wrote under %s", path);
    /* results/ is ignored in this repository */
    rc = run("git check-ignore -q results/x.json", out, sizeof out);
    T_CHECKF(rc == 0 || access(".git", F_OK) != 0, "results/ is not ignored by git (%d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_CHECK(system(cmd) == 0);
}

/* scripts/deps.sh with stand-ins for dpkg-query, sudo, apt-get and sha256sum: the
 * first two apt-get runs find the lock held (as when unattended-upgrades
 * runs on a fresh machine); deps.sh must wait and go on, and must not wait
 * on any other failure. */
static void test_deps_lock(void) {
    char dir[] = "/tmp/brisk_deps_XXXXXX", cmd[2048], out[8192];
    T_CHECK(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && printf '#!/bin/sh\\nexit 1\\n' > dpkg-query && "
             "printf '#!/bin/sh\\nexec \"$@\"\\n' > sudo && "
             "printf '#!/bin/sh\\nn=$(cat %s/count 2>/dev/null || echo 0); echo $((n + 1)) > %s/count\\n"
             "if [ $n -lt 2 ]; then echo \"E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by "
             "process 4242 (apt)\" >&2; exit 100; fi\\necho \"$*\" >> %s/ran\\n' > apt-get && "
             "printf '#!/bin/sh\nexit 0\n' > sha256sum && mkdir -p models venv/bin && "
             "cp sha256sum venv/bin/python && "
             "touch models/SmolLM2-135M-Instruct.Q4_1.gguf && "
             "chmod +x dpkg-query sudo apt-get sha256sum", dir, dir, dir, dir);
    T_CHECK(run(cmd, out, sizeof out) == 0);
    /* models.sh and the venv come after the packages: stand-ins are in place */
    snprintf(cmd, sizeof cmd, "PATH=%s:$PATH BRISK_MODELS=%s/models BRISK_VENV=%s/venv BRISK_APT_STEP_S=0.05 "
             "sh scripts/deps.sh", dir, dir, dir);
    int rc = run(cmd, out, sizeof out);
    T_CHECKF(rc == 0 && strstr(out, "waiting"), "deps.sh exit %d: %s", rc, out);
    char path[256], *ran = NULL;
    snprintf(path, sizeof path, "%s/ran", dir);
    eng_read_file(path, 0, &ran, NULL, NULL);
    T_CHECKF(ran && strstr(ran, "update") && strstr(ran, "install") && strstr(ran, "libwebsockets-dev"),
             "apt-get runs: %s", ran ? ran : "(none)");
    free(ran);
    /* any other failure ends deps.sh at once */
    snprintf(cmd, sizeof cmd, "cd %s && printf '#!/bin/sh\\necho \"E: Unable to locate package x\" >&2; "
             "exit 100\\n' > apt-get", dir);
    T_CHECK(run(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "PATH=%s:$PATH BRISK_MODELS=%s/models BRISK_VENV=%s/venv BRISK_APT_STEP_S=5 "
             "timeout 4 sh scripts/deps.sh", dir, dir, dir);
    rc = run(cmd, out, sizeof out);
    T_CHECKF(rc != 0 && rc != 124 && strstr(out, "Unable to locate"), "deps.sh exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_CHECK(system(cmd) == 0);
}

int main(void) {
    if (access(BRISK, X_OK)) {
        printf("  FAIL: %s is missing (make builds it)\n", BRISK);
        printf("0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    T_RUN(test_bad_values);
    T_RUN(test_unknown);
    T_RUN(test_tp);
    T_RUN(test_bench_cuda_tp);
    T_RUN(test_stats_line);
    T_RUN(test_default_outputs);
    T_RUN(test_deps_lock);
    T_DONE();
}
