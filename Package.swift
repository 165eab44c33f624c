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
        .target(name: "MalCore", dependencies: ["CJSONC"]),
        .target(name: "MalReaders", dependencies: ["MalCore", "CJSONC"]),
        .executableTarget(name: "malconv", dependencies: [
            "MalCore", "MalReaders",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "malrun", dependencies: [
            "MalCore", "MalReaders",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "MalReadersTests", dependencies: ["MalCore", "MalReaders"]),
    ]
)
