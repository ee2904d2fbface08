import Foundation
import Training

/// `longctx train --ring P [--data-parallel D]` in one process: `P·D` workers (one thread each, each with
/// `request.workers` threads of its own), each running a ``Trainer`` on the same request with a
/// ``RingTrainingGroup`` (rings of `P`) over an ``InProcessGroup``; rank 0 writes the outputs. Returns rank 0's log
/// records.
public enum RingTraining {
    public static func train(_ request: TrainRequest, ring: Int, dataParallel: Int = 1, strategy: RingStrategy? = nil,
                             progress: TrainingProgress?, check: StageRetrievalCheck?) throws -> [TrainingLogRecord] {
        guard ring >= 1, dataParallel >= 1 else {
            throw TrainingInputError("--ring", "--ring and --data-parallel must be at least 1 (got \(ring) and \(dataParallel))")
        }
        nonisolated(unsafe) let progress = progress, check = check
        let records = try InProcessGroup.run(size: ring * dataParallel) { comm in
            let trainer = try Trainer(request, group: RingTrainingGroup(communicator: comm, ring: ring, strategy: strategy))
            do {
                return try trainer.run(progress: comm.rank == 0 ? progress : nil, check: check)
            } catch let error as StageCheckFailedOnRankZero {
                // Rank 0 throws the check's own error; wait here until it has (the barrier then fails) so that its
                // error is the one reported, not this one.
                try comm.barrier()
                throw error
            }
        }
        return records[0]
    }
}
