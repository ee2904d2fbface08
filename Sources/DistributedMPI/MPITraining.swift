import Distributed
import Foundation
import Training

/// `mpirun -np P longctx train … --ring P`: one rank per process, each running a ``Trainer`` on the same request with
/// a ``RingTrainingGroup`` over MPI; rank 0 writes the outputs and every rank resumes from them. An error on any
/// rank is printed (one line, naming the rank when it is not 0) and ends the whole job through `MPI_Abort`, so no
/// rank is left waiting.
public enum MPITraining {
    /// Rank 0's log records; `nil` on the other ranks.
    public static func train(_ request: TrainRequest, ring: Int, strategy: RingStrategy? = nil,
                             progress: TrainingProgress?, check: StageRetrievalCheck?) throws -> [TrainingLogRecord]? {
        let comm = try MPICommunicator()
        do {
            guard ring == comm.size else {
                throw TrainingInputError("--ring", "the job has \(comm.size) MPI ranks (mpirun -np \(comm.size)); give --ring \(comm.size), got \(ring)")
            }
            let trainer = try Trainer(request, group: RingTrainingGroup(communicator: comm, strategy: strategy))
            let records = try trainer.run(progress: comm.rank == 0 ? progress : nil, check: check)
            try comm.barrier()
            comm.finalize()
            return comm.rank == 0 ? records : nil
        } catch {
            let prefix = comm.rank == 0 ? "" : "rank \(comm.rank): "
            FileHandle.standardError.write(Data("Error: \(prefix)\(error)\n".utf8))
            comm.abort(code: 1)
            exit(1)
        }
    }
}
