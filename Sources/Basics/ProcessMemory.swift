import Foundation

/// This process's memory as Linux reports it in `/proc/self/status` (0 where it cannot be read).
public enum ProcessMemory {
    /// Resident set size now (`VmRSS`), bytes.
    public static func residentBytes() -> Int { field("VmRSS:") }

    /// Peak resident set size (`VmHWM`), bytes.
    public static func peakResidentBytes() -> Int { field("VmHWM:") }

    static func field(_ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
        }
        return 0
    }
}
