/*
 * nativeparallel.h: the C API of libnativeparallel.so, shaped like NCCL's (same calls, argument order, result,
 * datatype and reduction numbers, with an np prefix), so a host that speaks NCCL can speak this.
 *
 *   npUniqueId id;  npComm_t comm;
 *   if (rank == 0) npGetUniqueId(&id);               // 128 bytes: where rank 0 hosts the rendezvous store
 *   broadcast id to every rank (MPI, a file, argv)
 *   npCommInitRank(&comm, nranks, id, rank);
 *   npAllReduce(send, recv, count, npFloat32, npSum, comm, NULL);
 *   npCommDestroy(comm);
 *
 * Buffers may be host memory (stream NULL) or CUDA device memory (stream: the CUstream/cudaStream_t whose
 * earlier work writes the input). Every call blocks until its output is written, on every kind of buffer.
 * Calls never abort the process: each returns an npResult_t, and npGetLastError() tells what went wrong on
 * the calling thread in one line. Tunables are NativeParallel's environment variables (NATIVEPARALLEL_TIMEOUT_S,
 * NATIVEPARALLEL_TRANSPORT=shm|tcp, NATIVEPARALLEL_DEBUG=INFO).
 */
#ifndef NATIVEPARALLEL_H
#define NATIVEPARALLEL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NP_VERSION_CODE 100 /* major * 10000 + minor * 100 + patch: 0.1.0 */
#define NP_UNIQUE_ID_BYTES 128

/* The rendezvous of one communicator: made once by npGetUniqueId, passed to every rank as is. It names the
 * store's address (MASTER_ADDR of the process that made it, else 127.0.0.1, fine when every rank runs on that
 * host) and a port free there; rank 0 hosts the store, so make the id on rank 0's host. */
typedef struct { char internal[NP_UNIQUE_ID_BYTES]; } npUniqueId;

/* An opaque communicator handle: one rank's place in one group. */
typedef struct npComm* npComm_t;

/* A CUstream or cudaStream_t, or NULL for host buffers. */
typedef void* npStream_t;

typedef enum {
    npSuccess = 0,
    npUnhandledCudaError = 1,
    npSystemError = 2,      /* a socket, shared-memory or file operation failed on this machine */
    npInternalError = 3,
    npInvalidArgument = 4,  /* a NULL or bad pointer, count, datatype, op, rank, root or peer */
    npInvalidUsage = 5,     /* a call the communicator's state does not allow */
    npRemoteError = 6,      /* a peer exited, called a different collective, or did not come within the timeout */
    npNumResults = 7
} npResult_t;

/* NCCL's numbers for the types NativeParallel reduces. */
typedef enum {
    npInt32 = 2, npInt = 2,
    npInt64 = 4,
    npFloat16 = 6, npHalf = 6,
    npFloat32 = 7, npFloat = 7,
    npBfloat16 = 9
} npDataType_t;

typedef enum { npSum = 0, npProd = 1, npMax = 2, npMin = 3, npAvg = 4 } npRedOp_t;

npResult_t npGetVersion(int* version);
npResult_t npGetUniqueId(npUniqueId* uniqueId);

/* Joins rank `rank` of `nranks`; returns when all nranks have joined (or fails at NATIVEPARALLEL_TIMEOUT_S).
 * npCommInitRank takes the id by value as NCCL does; the library's symbol takes its address (ctypes and other
 * foreign-function hosts call npCommInitRankById). */
npResult_t npCommInitRankById(npComm_t* comm, int nranks, const npUniqueId* commId, int rank);
static inline npResult_t npCommInitRank(npComm_t* comm, int nranks, npUniqueId commId, int rank) {
    return npCommInitRankById(comm, nranks, &commId, rank);
}
/* Leaves the group once the peers are done with it; the handle is invalid afterwards. */
npResult_t npCommDestroy(npComm_t comm);
/* Fails the peers' pending and later calls at once (they need not wait for the timeout), then destroys. */
npResult_t npCommAbort(npComm_t comm);
npResult_t npCommCount(const npComm_t comm, int* count);
npResult_t npCommUserRank(const npComm_t comm, int* rank);

/* recvbuff = op over every rank's sendbuff (count elements; sendbuff == recvbuff is in place). */
npResult_t npAllReduce(const void* sendbuff, void* recvbuff, size_t count, npDataType_t datatype,
                       npRedOp_t op, npComm_t comm, npStream_t stream);
/* recvbuff = root's sendbuff (count elements; only the root's sendbuff is read). */
npResult_t npBroadcast(const void* sendbuff, void* recvbuff, size_t count, npDataType_t datatype, int root,
                       npComm_t comm, npStream_t stream);
/* recvbuff (recvcount elements) = block `rank` of op over every rank's sendbuff (nranks * recvcount elements). */
npResult_t npReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, npDataType_t datatype,
                           npRedOp_t op, npComm_t comm, npStream_t stream);
/* recvbuff (nranks * sendcount elements) = every rank's sendbuff, in rank order. */
npResult_t npAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, npDataType_t datatype,
                       npComm_t comm, npStream_t stream);
/* Point to point: the peer's npRecv must have the same count and datatype. */
npResult_t npSend(const void* sendbuff, size_t count, npDataType_t datatype, int peer, npComm_t comm,
                  npStream_t stream);
npResult_t npRecv(void* recvbuff, size_t count, npDataType_t datatype, int peer, npComm_t comm,
                  npStream_t stream);

/* A fixed sentence for a result code (static storage). */
const char* npGetErrorString(npResult_t result);
/* The last failure on the calling thread, e.g. "npAllReduce: datatype 0 is not supported: use npInt32 (2), ...";
 * valid until the next failing call on this thread; "" when none failed. comm may be NULL. */
const char* npGetLastError(npComm_t comm);

#ifdef __cplusplus
}
#endif

#endif /* NATIVEPARALLEL_H */
