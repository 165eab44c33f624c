/// A binary min-heap of `Comparable` values in an array (the smallest at `first`): the BPE
/// merger's queue of candidate merges and the sampler's top-k (a k-element heap whose root is the
/// worst value kept). Internal and generic, so each use is specialised and inlined in this module.
struct BinaryHeap<Element: Comparable> {
    private(set) var elements: [Element] = []

    var count: Int { elements.count }
    var first: Element? { elements.first }

    mutating func reserveCapacity(_ n: Int) { elements.reserveCapacity(n) }
    mutating func removeAll() { elements.removeAll(keepingCapacity: true) }

    @inline(__always)
    mutating func insert(_ e: Element) {
        elements.append(e)
        var c = elements.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            if elements[c] < elements[p] { elements.swapAt(c, p); c = p } else { break }
        }
    }

    @inline(__always)
    mutating func popMin() -> Element? {
        guard let top = elements.first else { return nil }
        let last = elements.removeLast()
        if !elements.isEmpty {
            elements[0] = last
            siftDown(0)
        }
        return top
    }

    /// Replaces the smallest element (the heap must not be empty).
    @inline(__always)
    mutating func replaceMin(with e: Element) {
        elements[0] = e
        siftDown(0)
    }

    @inline(__always)
    private mutating func siftDown(_ i0: Int) {
        var c = i0
        while true {
            let l = 2 * c + 1, r = l + 1
            var m = c
            if l < elements.count && elements[l] < elements[m] { m = l }
            if r < elements.count && elements[r] < elements[m] { m = r }
            if m == c { return }
            elements.swapAt(c, m)
            c = m
        }
    }
}
