import CKernels

/// The instruction set the transformer kernels (`CKernels`: fused attention tile, softmax, exp, SiLU, RMSNorm,
/// RoPE) run on. Every kernel exists for each path; the process uses ``active``, the best the CPU supports unless
/// the environment variable `LONGCTX_KERNELS` names a lower one. Tests run each supported path explicitly.
public enum KernelPath: Int32, CaseIterable, Sendable, CustomStringConvertible {
    /// Plain C (the reference; attention uses BLAS tiles on it).
    case portable = 0
    /// AVX2 + FMA, 8 lanes.
    case avx2 = 1
    /// AVX-512 F/BW/VL/DQ, 16 lanes.
    case avx512 = 2

    /// The path the kernels run on in this process.
    public static var active: KernelPath { KernelPath(rawValue: ck_path_active()) ?? .portable }

    /// Whether this CPU can run the path.
    public var isSupported: Bool { ck_path_supported(rawValue) != 0 }

    public var description: String { String(cString: ck_path_name(rawValue)) }

    /// Paths this CPU supports, lowest first.
    public static var supported: [KernelPath] { allCases.filter(\.isSupported) }

    /// The CPU's flags that matter to the kernels, space-separated (`"avx2 fma f16c avx512f …"`).
    public static var cpuFlags: String {
        var buf = [CChar](repeating: 0, count: 256)
        ck_cpu_flags(&buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
