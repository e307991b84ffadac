// Embedding gather: out[t, :] = table[ids[t], :]; ids outside [0, vocab) give a zero row.
//   ids: (tokens) i32; table: (vocab, hidden); out: (tokens, hidden), same dtype as table.
// Grid: one block per token (grid-stride over tokens), threads stride over hidden.
// v1: plain row copy, coalesced along hidden. Default.
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
