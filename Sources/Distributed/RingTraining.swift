import Foundation
import Training

/// `longctx train --ring N` in one process: `N` workers (one thread each, each with `request.workers` threads of its
/// own), each running a ``Trainer`` on the same request with a ``RingTrainingGroup`` over an ``InProcessGroup``; rank 0
/// writes the outputs. Returns rank 0's log records.
public enum RingTraining {
    public static func train(_ request: TrainRequest, workers: Int, strategy: RingStrategy? = nil,
                             progress: TrainingProgress?, check: StageRetrievalCheck?) throws -> [TrainingLogRecord] {
        nonisolated(unsafe) let progress = progress, check = check
        let records = try InProcessGroup.run(size: workers) { comm in
            let trainer = try Trainer(request, group: RingTrainingGroup(communicator: comm, strategy: strategy))
            return try trainer.run(progress: comm.rank == 0 ? progress : nil, check: check)
        }
        return records[0]
    }
}
