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
            return try trainer.run(progress: comm.rank == 0 ? progress : nil, check: check)
        }
        return records[0]
    }
}
