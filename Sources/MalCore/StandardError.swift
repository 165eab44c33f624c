#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a line to standard error (diagnostics never go to stdout, which carries results).
public func printError(_ message: String, newline: Bool = true) {
    var line = message
    if newline && !line.hasSuffix("\n") { line += "\n" }
    var rest = Array(line.utf8)[...]
    while !rest.isEmpty {
        let n = rest.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        rest = rest.dropFirst(n)
    }
}

/// True when standard error is a terminal (progress output is shown only then).
public var stderrIsTerminal: Bool { isatty(2) != 0 }

/// Writes text to standard output immediately (unbuffered: streamed generation).
public func writeOut(_ text: String) {
    var rest = Array(text.utf8)[...]
    while !rest.isEmpty {
        let n = rest.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        rest = rest.dropFirst(n)
    }
}

/// Seconds on a monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
