import MalCore

/// A one-line progress display on stderr, shown only when stderr is a terminal, and only once
/// `delay` seconds have passed (a load that takes less shows nothing).
public final class ProgressLine {
    let label: String
    let enabled = stderrIsTerminal
    let start = monotonicSeconds(), delay: Double
    private var last = -1.0, shown = false
    public init(_ label: String, after delay: Double = 0) {
        self.label = label
        self.delay = delay
    }

    public func update(_ done: Int, _ total: Int, _ item: String) {
        guard enabled, total > 0 else { return }
        let now = monotonicSeconds()
        if !shown && now - start < delay { return }
        if done < total && now - last < 0.1 { return }
        last = now
        shown = true
        let pct = done * 100 / total
        var line = "\r\(label) [\(done)/\(total)] \(pct)% \(item)"
        if line.count > 100 { line = String(line.prefix(100)) }
        printError(line + "\u{1B}[K" + (done >= total ? "\n" : ""), newline: false)
        if done >= total { shown = false }
    }

    /// Ends a line left open (work that finished short of its estimated total).
    public func finish() {
        if shown { printError("\u{1B}[K") }
        shown = false
    }
}
