import CMalKernels

/// The runtime's persistent worker pool (C, `pool.c`): short parallel regions without waking
/// threads through libdispatch each time. One job at a time; a job started while another
/// thread's job runs is executed inline by its caller.
enum WorkerPool {
    /// Runs `body(i)` for i in 0..<n on `threads` threads (the caller included).
    static func run(_ n: Int, threads: Int, _ body: (Int) -> Void) {
        if n <= 0 { return }
        if threads <= 1 || n == 1 { for i in 0..<n { body(i) }; return }
        mal_pool_init(Int32(threads))
        withoutActuallyEscaping(body) { b in
            var f = b
            withUnsafeMutablePointer(to: &f) { p in
                mal_pool_run({ ctx, i in ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i)) }, p, n, Int32(threads))
            }
        }
    }
}
