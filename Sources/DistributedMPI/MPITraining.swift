import Distributed
import Foundation
import Training

/// `mpirun -np W longctx train … --ring P`: one rank per process, each running a ``Trainer`` on the same request with
/// a ``RingTrainingGroup`` over MPI (rings of `P` consecutive ranks; `W / P` of them share each step as data
/// parallelism); rank 0 writes the outputs and every rank resumes from them. An error on any rank is printed (one
/// line, naming the rank when it is not 0) and ends the whole job through `MPI_Abort`, so no rank is left waiting.
public enum MPITraining {
    /// Rank 0's log records; `nil` on the other ranks. `dataParallel`, when given, must be `W / ring`.
    public static func train(_ request: TrainRequest, ring: Int, dataParallel: Int? = nil, strategy: RingStrategy? = nil,
                             progress: TrainingProgress?, check: StageRetrievalCheck?) throws -> [TrainingLogRecord]? {
        let comm = try MPICommunicator()
        do {
            guard ring >= 1, comm.size % ring == 0 else {
                throw TrainingInputError("--ring", "the job has \(comm.size) MPI ranks (mpirun -np \(comm.size)), which --ring \(ring) does not divide")
            }
            if let dataParallel, dataParallel * ring != comm.size {
                throw TrainingInputError("--data-parallel", "the job has \(comm.size) MPI ranks (mpirun -np \(comm.size)), not --ring \(ring) × --data-parallel \(dataParallel)")
            }
            let trainer = try Trainer(request, group: RingTrainingGroup(communicator: comm, ring: ring, strategy: strategy))
            let records = try trainer.run(progress: comm.rank == 0 ? progress : nil, check: check)
            try comm.barrier()
            comm.finalize()
            return comm.rank == 0 ? records : nil
        } catch is StageCheckFailedOnRankZero {
            // Rank 0 reports the failed check and ends the job; wait for it.
            try? comm.barrier()
            exit(1)
        } catch {
            let prefix = comm.rank == 0 ? "" : "rank \(comm.rank): "
            FileHandle.standardError.write(Data("Error: \(prefix)\(error)\n".utf8))
            comm.abort(code: 1)
            exit(1)
        }
    }
}
