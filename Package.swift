// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "LongContext",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "longctx", targets: ["longctx"]),
        .library(name: "Basics", targets: ["Basics"]),
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "ModelIO", targets: ["ModelIO"]),
        .library(name: "RoPE", targets: ["RoPE"]),
        .library(name: "LoRA", targets: ["LoRA"]),
        .library(name: "Transformer", targets: ["Transformer"]),
        .library(name: "Tokenizers", targets: ["Tokenizers"]),
        .library(name: "GGUFImport", targets: ["GGUFImport"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Distributed", targets: ["Distributed"]),
        .library(name: "DistributedMPI", targets: ["DistributedMPI"]),
        .library(name: "Demo", targets: ["Demo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Without its default traits: swift-configuration and the full-Foundation extras are not used here.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // C libraries from Debian, found through pkg-config.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd",
                       pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenMPI", path: "Sources/COpenMPI",
                       pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl",
                       pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // Portable SIMD kernels (runtime CPU dispatch, no unsafe flags).
        .target(name: "CKernels", cSettings: [.define("NDEBUG")]),

        // Seeded randomness (SplitMix64), JSON values, length notation shared by every layer. Pure, no dependencies.
        .target(name: "Basics"),
        // Tensor core: dtypes, conversions, BLAS/LAPACK wrappers. No file I/O.
        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CKernels"]),
        // RoPE scaling math (pure): inverse frequencies, attention factors, plans, config codec.
        .target(name: "RoPE", dependencies: ["Basics"]),
        // Hugging Face tokenizer.json tokenizers (BPE), chat formatting, a tiny BPE trainer for random models.
        .target(name: "Tokenizers", dependencies: ["Basics", "ModelIO"]),
        // Model I/O: safetensors, sharded checkpoints, Hugging Face model directories, zstd.
        .target(name: "ModelIO", dependencies: ["Basics", "TensorCore", "RoPE", "CZstd"]),
        // LoRA extraction (SVD of weight deltas), merging and combination; PEFT adapter format.
        .target(name: "LoRA", dependencies: ["Basics", "TensorCore", "ModelIO"]),
        // Llama-family transformer engine: weights, blockwise attention, KV cache, sampling, generation.
        .target(name: "Transformer", dependencies: ["Basics", "TensorCore", "ModelIO", "RoPE", "Tokenizers", "CKernels"]),
        // Continued pretraining: trainable f32 weights, backward pass, AdamW, packed data with document masks,
        // stage schedules, checkpoints and exact resume.
        .target(name: "Training", dependencies: [
            "Basics", "TensorCore", "ModelIO", "RoPE", "Tokenizers", "Transformer", "LoRA", "Evaluation", "CKernels",
            .product(name: "Yams", package: "Yams"),
        ]),
        // Sequence parallelism: sequence layouts (contiguous, zigzag), the Communicator interface with an in-process
        // transport (threads), ring attention forward/backward (pass-KV and all-gather), and sharded training steps.
        .target(name: "Distributed", dependencies: ["Basics", "TensorCore", "Transformer", "Training"]),
        // The MPI transport of Distributed (Open MPI through pkg-config `ompi-c`).
        .target(name: "DistributedMPI", dependencies: ["Distributed", "COpenMPI"]),
        // GGUF → Hugging Face directory import (weights, config, tokenizer) and the model cache.
        .target(name: "GGUFImport", dependencies: ["Basics", "ModelIO", "TensorCore", "RoPE"]),
        // Long-context evaluation (pure): passkey/NIAH/RULER generators, length fitting, scoring, reports.
        .target(name: "Evaluation", dependencies: ["Basics"]),
        // Completion backends: the built-in engine (requests interleaved a step at a time on its own thread) and an OpenAI-compatible HTTP client over
        // libcurl (retries, timeouts, concurrency limit).
        .target(name: "EvalBackends", dependencies: [
            "Evaluation", "Tokenizers", "Transformer", "CCurl",
        ]),
        // `longctx demo`: the toolkit's whole loop on a toy model trained by the toolkit (base from scratch, training-free
        // RoPE plans, progressive training, LoRA extract/merge, retrieval grids) and SmolLM2 beyond its window.
        .target(name: "Demo", dependencies: [
            "Basics", "ModelIO", "RoPE", "Tokenizers", "Transformer", "Training", "Distributed", "LoRA", "Evaluation",
            "EvalBackends",
        ]),
        // OpenAI-compatible HTTP server over a completion backend (`longctx serve`).
        .target(name: "Serving", dependencies: [
            "Basics", "Evaluation",
            .product(name: "Hummingbird", package: "hummingbird"),
        ]),
        // The command-line tool: thin commands over the libraries.
        .executableTarget(name: "longctx", dependencies: [
            "Basics", "TensorCore", "ModelIO", "RoPE", "Tokenizers", "Transformer", "GGUFImport", "LoRA", "Evaluation", "EvalBackends", "Serving", "Training", "Distributed", "DistributedMPI", "Demo",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Helpers shared by the test targets: temporary directories, running `longctx` and Python.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // Micro-benchmarks driven by scripts/bench.
        // Ring attention / sharded-step exactness check run under `mpirun` by DistributedTests.
        .executableTarget(name: "longctx-mpi-check", dependencies: ["Basics", "Distributed", "DistributedMPI", "ModelIO", "Training", "Transformer"]),
        .executableTarget(name: "longctx-bench", dependencies: ["Basics", "CKernels", "TensorCore", "ModelIO", "Transformer", "Tokenizers", "LoRA", "Evaluation", "Training", "Distributed", "DistributedMPI"]),

        .testTarget(name: "BasicsTests", dependencies: ["Basics"]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"]),
        .testTarget(name: "ModelIOTests", dependencies: ["Basics", "ModelIO", "TensorCore", "TestSupport", "longctx"]),
        .testTarget(name: "TransformerTests", dependencies: ["Basics", "CKernels", "Transformer", "Tokenizers", "ModelIO", "TensorCore", "TestSupport", "longctx"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "ModelIO", "TestSupport", "longctx"]),
        .testTarget(name: "GGUFTests", dependencies: ["Basics", "ModelIO", "GGUFImport", "TensorCore", "Tokenizers", "Transformer", "TestSupport", "longctx"],
                    exclude: ["agreement-prompts.txt"]),
        .testTarget(name: "LoRATests", dependencies: ["Basics", "LoRA", "ModelIO", "TensorCore", "TestSupport"]),
        .testTarget(name: "EvaluationTests",
                    dependencies: ["Basics", "Evaluation", "EvalBackends", "Serving", "Tokenizers", "Transformer", "TestSupport", "longctx",
                                   // The tests' own raw HTTP client (the backend itself uses URLSession).
                                   .product(name: "AsyncHTTPClient", package: "async-http-client")],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests",
                    dependencies: ["Basics", "Training", "Transformer", "Tokenizers", "ModelIO", "TensorCore", "RoPE", "LoRA",
                                   "TestSupport", "longctx"]),
        .testTarget(name: "DistributedTests",
                    dependencies: ["Basics", "Distributed", "ModelIO", "Training", "Transformer", "TestSupport", "longctx-mpi-check", "longctx"]),
        .testTarget(name: "DemoTests",
                    dependencies: ["Basics", "Demo", "EvalBackends", "Evaluation", "Tokenizers", "Training", "ModelIO", "RoPE", "Transformer", "TestSupport", "longctx"]),
        .testTarget(name: "RoPETests", dependencies: ["Basics", "RoPE", "ModelIO", "TestSupport"],
                    resources: [.copy("Fixtures")]),
    ]
)
