import MalCore
import MalWriters

/// A one-line progress display on stderr, shown only when stderr is a terminal.
final class Progress {
    let label: String
    let enabled = stderrIsTerminal
    private var last = -1.0
    init(_ label: String) { self.label = label }

    func update(_ done: Int, _ total: Int, _ item: String) {
        guard enabled, total > 0 else { return }
        let now = monotonicSeconds()
        if done < total && now - last < 0.1 { return }
        last = now
        let pct = done * 100 / total
        var line = "\r\(label) [\(done)/\(total)] \(pct)% \(item)"
        if line.count > 100 { line = String(line.prefix(100)) }
        printError(line + "\u{1B}[K" + (done >= total ? "\n" : ""), newline: false)
    }
}
