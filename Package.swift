// swift-tools-version:6.0
import PackageDescription

/// Kernels need a CPU target: without one Swift SIMD FMAs become libm calls
/// (see Docs/PERFORMANCE.md). Override with `MAL_TARGET_CPU=haswell` for an AVX2-only build.
let package = Package(
    name: "malconv",
    products: [
        .executable(name: "malconv", targets: ["malconv"]),
        .executable(name: "malrun", targets: ["malrun"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CJSONC", pkgConfig: "json-c", providers: [.apt(["libjson-c-dev"])]),
        .target(name: "CMalKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "MalCore", dependencies: ["CJSONC", "CMalKernels"]),
        .target(name: "MalReaders", dependencies: ["MalCore", "CJSONC", "CZstd", "CMalKernels"]),
        .target(name: "MalTransforms", dependencies: ["MalCore", "MalReaders", "CMalKernels"]),
        .target(name: "MalWriters", dependencies: ["MalCore", "MalReaders", "MalTransforms", "CZstd", "CMalKernels"]),
        .target(name: "MalRuntime", dependencies: ["MalCore", "MalReaders", "MalTransforms", "CMalKernels"]),
        .target(name: "MalVerify", dependencies: ["MalCore", "MalReaders", "MalTransforms", "MalRuntime", "CMalKernels"]),
        .executableTarget(name: "malconv", dependencies: [
            "MalCore", "MalReaders", "MalTransforms", "MalWriters", "MalVerify", "MalRuntime",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "malrun", dependencies: [
            "MalCore", "MalReaders", "MalRuntime", "MalTransforms", "MalWriters",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "malbench", dependencies: ["MalCore", "MalReaders", "MalRuntime", "MalTransforms", "MalWriters"],
                         path: "Benchmarks/MalBench"),
        .target(name: "MalTestSupport", path: "Tests/MalTestSupport"),
        .testTarget(name: "MalRuntimeTests", dependencies: ["MalTestSupport", "CMalKernels", "MalCore", "MalReaders", "MalRuntime", "MalTransforms", "MalWriters"]),
        .testTarget(name: "MalReadersTests", dependencies: ["MalTestSupport", "MalCore", "MalReaders"]),
        .testTarget(name: "MalQuantTests", dependencies: ["MalTestSupport", "MalCore", "MalReaders", "MalTransforms", "MalWriters", "MalVerify", "MalRuntime"]),
        .testTarget(name: "MalContainerTests", dependencies: ["MalTestSupport", "MalCore", "MalReaders", "MalTransforms", "MalWriters"]),
    ]
)
