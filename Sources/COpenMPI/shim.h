// Open MPI's handles (MPI_COMM_WORLD, MPI_BYTE, MPI_FLOAT, MPI_SUM…) are macros over addresses of globals, which
// Swift cannot import; these inline wrappers take plain C arguments instead. All communication is on MPI_COMM_WORLD.
#ifndef LONGCTX_MPI_SHIM_H
#define LONGCTX_MPI_SHIM_H
#include <mpi.h>
#include <stddef.h>

/// A pending send/receive pair.
typedef struct { MPI_Request requests[2]; } lc_mpi_exchange;

/// MPI_Init_thread (serialized: one thread at a time calls MPI) with errors returned, not fatal. Returns an MPI
/// error code; `rank`/`size` receive the world rank and size.
static inline int lc_mpi_init(int *rank, int *size) {
    int initialized = 0, provided = 0, rc = MPI_SUCCESS;
    MPI_Initialized(&initialized);
    if (!initialized) rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

static inline int lc_mpi_finalize(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    return finalized ? MPI_SUCCESS : MPI_Finalize();
}

static inline void lc_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static inline int lc_mpi_start_exchange(const void *send, int sendBytes, int destination, void *receive,
                                        int receiveBytes, int source, int tag, lc_mpi_exchange *exchange) {
    int rc = MPI_Irecv(receive, receiveBytes, MPI_BYTE, source, tag, MPI_COMM_WORLD, &exchange->requests[0]);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Isend(send, sendBytes, MPI_BYTE, destination, tag, MPI_COMM_WORLD, &exchange->requests[1]);
}

/// Waits for both halves; `receivedBytes` gets the size of the message that arrived.
static inline int lc_mpi_wait_exchange(lc_mpi_exchange *exchange, int *receivedBytes) {
    MPI_Status statuses[2];
    int rc = MPI_Waitall(2, exchange->requests, statuses);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Get_count(&statuses[0], MPI_BYTE, receivedBytes);
}

static inline int lc_mpi_allreduce_sum_float(float *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int lc_mpi_allreduce_sum_double(double *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static inline int lc_mpi_broadcast(void *buffer, int bytes, int root) {
    return MPI_Bcast(buffer, bytes, MPI_BYTE, root, MPI_COMM_WORLD);
}

static inline int lc_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/// The text of an MPI error code.
static inline void lc_mpi_error_string(int code, char *text, int capacity) {
    int length = 0;
    if (capacity < MPI_MAX_ERROR_STRING) { text[0] = 0; return; }
    MPI_Error_string(code, text, &length);
}

static inline int lc_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
#endif
