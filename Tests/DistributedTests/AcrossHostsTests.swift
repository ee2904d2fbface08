import Distributed
import Foundation
import TestSupport
import Testing
import Training

/// Two "hosts" on this machine: two network namespaces joined by a veth pair, each with its own address on a
/// private /24. `mpirun` runs in the first; Open MPI's launcher reaches the second through an rsh agent that runs
/// the command in the namespace named after the host's address, and the ranks talk over Open MPI's TCP transport
/// (`btl tcp,self`, no shared memory) on that subnet only. Names and addresses are unique per run; everything is
/// removed when the value is closed.
final class NetworkNamespacePair {
    let names: (String, String)
    let addresses: (String, String)
    let subnet: String
    let agent: String
    private let directory: String

    /// Whether this process may create network namespaces (root, or CAP_SYS_ADMIN with `ip` from iproute2): tries
    /// to add and delete one.
    static let permitted: Bool = {
        guard let ip = ipPath else { return false }
        let name = "lcprobe-\(getpid())-\(UInt32.random(in: 0...UInt32.max) % 100_000)"
        guard (try? TestSupport.run(ip, ["netns", "add", name]))?.status == 0 else { return false }
        _ = try? TestSupport.run(ip, ["netns", "del", name])
        return true
    }()

    static let ipPath: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    init() throws {
        guard let ip = Self.ipPath else { throw DistributedError("ip (iproute2) is not installed") }
        let tag = "\(getpid() % 10_000)\(UInt32.random(in: 0..<1000))"
        names = ("lcA\(tag)", "lcB\(tag)")
        // A random 10.x.y.0/24 so that concurrent runs do not share a subnet.
        let x = Int.random(in: 64...250), y = Int.random(in: 1...250)
        addresses = ("10.\(x).\(y).1", "10.\(x).\(y).2")
        subnet = "10.\(x).\(y).0/24"
        directory = TestSupport.scratchDirectory("netns")
        agent = directory + "/rsh"
        let veth = ("va\(tag)", "vb\(tag)")
        var created: [String] = []
        do {
            for ns in [names.0, names.1] {
                try Self.ip(ip, ["netns", "add", ns])
                created.append(ns)
            }
            try Self.ip(ip, ["link", "add", veth.0, "type", "veth", "peer", "name", veth.1])
            try Self.ip(ip, ["link", "set", veth.0, "netns", names.0])
            try Self.ip(ip, ["link", "set", veth.1, "netns", names.1])
            for (ns, dev, address) in [(names.0, veth.0, addresses.0), (names.1, veth.1, addresses.1)] {
                try Self.ip(ip, ["-n", ns, "addr", "add", address + "/24", "dev", dev])
                try Self.ip(ip, ["-n", ns, "link", "set", dev, "up"])
                try Self.ip(ip, ["-n", ns, "link", "set", "lo", "up"])
            }
            // Open MPI's rsh agent: "AGENT HOST COMMAND..." runs COMMAND in HOST's namespace.
            let script = """
                #!/bin/sh
                host=$1; shift
                case "$host" in \(addresses.0)) ns=\(names.0) ;; \(addresses.1)) ns=\(names.1) ;; *) echo "unknown host $host" >&2; exit 1 ;; esac
                exec \(ip) netns exec "$ns" sh -c "$*"

                """
            try script.write(toFile: agent, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: agent)
        } catch {
            for ns in created { _ = try? TestSupport.run(ip, ["netns", "del", ns]) }
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// Deletes both namespaces (their veth ends go with them) and the agent.
    func close() {
        if let ip = Self.ipPath {
            for ns in [names.0, names.1] { _ = try? TestSupport.run(ip, ["netns", "del", ns]) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func ip(_ ip: String, _ arguments: [String]) throws {
        let r = try TestSupport.run(ip, arguments)
        guard r.status == 0 else { throw DistributedError("ip \(arguments.joined(separator: " ")): \(r.stderr)") }
    }

    /// `mpirun -np 2 EXECUTABLE ARGS` with one rank on each host, TCP only, started from the first namespace.
    func mpirun(_ executable: String, _ arguments: [String]) throws -> TestSupport.ProcessResult {
        guard let ip = Self.ipPath, let mpirun = MPI.mpirun else { throw DistributedError("ip or mpirun is missing") }
        let env = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   "OMPI_MCA_btl_base_warn_component_unused": "0"]
        return try TestSupport.run(ip, ["netns", "exec", names.0, mpirun,
                                        "--host", "\(addresses.0):1,\(addresses.1):1", "-np", "2",
                                        "--mca", "plm_rsh_agent", agent, "--mca", "btl", "tcp,self",
                                        "--mca", "btl_tcp_if_include", subnet, "--mca", "oob_tcp_if_include", subnet,
                                        executable] + arguments, environment: env)
    }
}

/// The 2-rank jobs across two "hosts" (network namespaces, Open MPI over TCP) give the one-host results.
@Suite(.serialized, .enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"),
       .enabled(if: NetworkNamespacePair.permitted, "network namespaces cannot be created here (`ip netns add` needs root/CAP_SYS_ADMIN and iproute2): the across-hosts test is skipped"))
struct AcrossHostsTests {
    /// Ring attention's out/lse/dQ/dK/dV within 1e-5 of single-process attention with the two ranks in different
    /// network namespaces (each rank prints its namespace; they must differ).
    @Test func attentionAcrossNamespaces() throws {
        let hosts = try NetworkNamespacePair()
        defer { hosts.close() }
        for layout in SequenceLayoutKind.allCases {
            let r = try hosts.mpirun(TestSupport.builtExecutable("longctx-mpi-check"),
                                     ["attention", "96", layout.rawValue, "pass-kv", "documents"])
            #expect(r.status == 0, "\(layout): \(r.stdout) \(r.stderr)")
            let namespaces = Set(r.stdout.split(separator: "\n").filter { $0.hasPrefix("rank ") }
                .compactMap { $0.split(separator: " ").last.map(String.init) })
            #expect(namespaces.count == 2, "the ranks did not run in two network namespaces: \(r.stdout)")
        }
    }

    /// `mpirun -np 2 longctx train … --ring 2` across the two namespaces ends with the single-process weights (to
    /// 1e-5, as on one host) and the same loss curve.
    @Test func trainingAcrossNamespaces() throws {
        let hosts = try NetworkNamespacePair()
        defer { hosts.close() }
        let out = RingTrainTests.fixture.root + "/hosts-\(UUID().uuidString.prefix(6))"
        try RingTrainTests.expectMatchesSingleProcess(out, try hosts.mpirun(TestSupport.longctxPath, RingTrainTests.arguments(out: out, ring: 2)))
    }
}
