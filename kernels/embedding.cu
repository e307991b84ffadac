// Embedding gather: out[t, :] = table[ids[t], :]; ids outside [0, vocab) give a zero row.
//   ids: (tokens) i32; table: (vocab, hidden); out: (tokens, hidden), same dtype as table.
// Grid: one block per token (grid-stride over tokens), threads stride over hidden.
// v1: plain row copy, coalesced along hidden. Default.
// Backward (embedding_bwd): d_table[v, :] += sum of d_out[t, :] over tokens t with ids[t] == v, in token order;
//   ids outside [0, vocab) are skipped. ids: (tokens) i32; d_out: (tokens, hidden); d_table: (vocab, hidden), one dtype.
// Grid: (ceil(hidden / 256), parts): block (x, p) owns columns [256x, 256x + 256) of the vocab rows
//   [p * vocab / parts, (p + 1) * vocab / parts); each thread walks all tokens in order and adds the matching rows'
//   element of its column. Every d_table element has exactly one owner: no atomics, deterministic for any parts.
// v1: read-modify-write in the table's dtype per token (bf16 rounds after every add). Default.
#include "common/dtypes.cuh"

struct EmbeddingArgs {
    const int* ids;      // (tokens)
    const void* table;   // (vocab, hidden)
    void* out;           // (tokens, hidden)
    int tokens;
    int hidden;
    int vocab;
};

template <typename T>
__device__ void embedding_fwd(const EmbeddingArgs& a) {
    const T* table = static_cast<const T*>(a.table);
    T* out = static_cast<T*>(a.out);
    for (int t = blockIdx.x; t < a.tokens; t += gridDim.x) {
        int id = a.ids[t];
        bool valid = (unsigned)id < (unsigned)a.vocab;
        long long src = (long long)id * a.hidden, dst = (long long)t * a.hidden;
        for (int j = threadIdx.x; j < a.hidden; j += blockDim.x) {
            out[dst + j] = valid ? table[src + j] : from_float<T>(0.0f);
        }
    }
}

extern "C" __global__ void embedding_fwd_f32(EmbeddingArgs a) { embedding_fwd<float>(a); }
extern "C" __global__ void embedding_fwd_bf16(EmbeddingArgs a) { embedding_fwd<bf16>(a); }
extern "C" __global__ void embedding_fwd_f16(EmbeddingArgs a) { embedding_fwd<f16>(a); }

struct EmbeddingBwdArgs {
    const int* ids;      // (tokens)
    const void* d_out;   // (tokens, hidden)
    void* d_table;       // (vocab, hidden), accumulated
    int tokens;
    int hidden;
    int vocab;
    int parts;           // gridDim.y: the vocab split
};

template <typename T>
__device__ void embedding_bwd(const EmbeddingBwdArgs& a) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= a.hidden) return;  // no barriers below
    int lo = (int)((long long)a.vocab * blockIdx.y / a.parts), hi = (int)((long long)a.vocab * (blockIdx.y + 1) / a.parts);
    for (int t = 0; t < a.tokens; t++) {
        int id = a.ids[t];
        if (id < lo || id >= hi) continue;
        long long o = (long long)id * a.hidden + j;
        store_f<T>(a.d_table, o, load_f<T>(a.d_table, o) + load_f<T>(a.d_out, (long long)t * a.hidden + j));
    }
}

extern "C" __global__ void embedding_bwd_f32(EmbeddingBwdArgs a) { embedding_bwd<float>(a); }
extern "C" __global__ void embedding_bwd_bf16(EmbeddingBwdArgs a) { embedding_bwd<bf16>(a); }
