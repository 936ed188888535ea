/* tp.c — how a model is shared among tensor-parallel ranks (backend.h). */
#include "backend.h"

int eng_tp_slice_of(const eng_config *c, int n, int rank, eng_tp_slice *out, eng_err *err) {
    if (n < 1 || rank < 0 || rank >= n)
        return eng_seterr(err, ENG_EINVAL, "tp: rank %d of %d ranks", rank, n);
    int nh = c->n_heads, nkv = c->n_kv_heads;
    if (nh <= 0 || nkv <= 0 || nh % nkv)
        return eng_seterr(err, ENG_EINVAL, "tp: %d attention heads and %d KV heads", nh, nkv);
    if (nh % n)
        return eng_seterr(err, ENG_EUNSUPPORTED, "tp: cannot split %d attention heads over %d "
                          "ranks (the rank count must divide the heads)", nh, n);
    if (nkv % n && n % nkv)
        return eng_seterr(err, ENG_EUNSUPPORTED, "tp: cannot split %d KV heads over %d ranks "
                          "(the rank count must divide the KV heads or be a multiple of them)",
                          nkv, n);
    if (c->intermediate < n || c->vocab_size < n)
        return eng_seterr(err, ENG_EUNSUPPORTED, "tp: %d MLP columns or %d vocabulary rows are "
                          "too few for %d ranks", c->intermediate, c->vocab_size, n);
    int grp = nh / nkv, per = nh / n;
    out->q0 = rank * per;
    out->nh = per;
    out->k0 = out->q0 / grp;
    out->nkv = (out->q0 + per - 1) / grp + 1 - out->k0;
    out->i0 = (int)((int64_t)c->intermediate * rank / n);
    out->ni = (int)((int64_t)c->intermediate * (rank + 1) / n) - out->i0;
    out->v0 = (int)((int64_t)c->vocab_size * rank / n);
    out->nv = (int)((int64_t)c->vocab_size * (rank + 1) / n) - out->v0;
    return ENG_OK;
}
