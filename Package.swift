// swift-tools-version:6.0
import Foundation
import PackageDescription

/// `make build` adds `-target-cpu native -march=native`; the AVX-512 kernels dispatch at run time
/// (`mal_simd_level`) in any build, the rest of the code follows the build's CPU target.
let package = Package(
    name: "malconv",
    products: [
        .executable(name: "malconv", targets: ["malconv"]),
        .executable(name: "malrun", targets: ["malrun"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CJSONC", pkgConfig: "json-c", providers: [.apt(["libjson-c-dev"])]),
        .target(name: "CMalKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "MalCore", dependencies: ["CJSONC", "CMalKernels"]),
        // The module graph (`Docs/ARCHITECTURE.md`; `Tests/Scripts/structure_check.py` compares the
        // real `import` lines and these dependencies with it): no Runtime → Transforms, no Writers → Readers.
        .target(name: "MalArchitectures", dependencies: ["MalCore"]),
        .target(name: "MalReaders", dependencies: ["MalCore", "MalArchitectures", "CZstd", "CMalKernels"]),
        .target(name: "MalTransforms", dependencies: ["MalCore", "CMalKernels"]),
        .target(name: "MalWriters", dependencies: ["MalCore", "MalArchitectures", "CZstd", "CMalKernels"]),
        .target(name: "MalRuntime", dependencies: ["MalCore", "MalArchitectures", "MalReaders", "CMalKernels"]),
        .target(name: "MalChat", dependencies: ["MalCore", "MalReaders", "MalRuntime"]),
        .target(name: "MalCommandLine", dependencies: ["MalCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(
            name: "MalServe",
            dependencies: [
                "MalCore", "MalRuntime", "MalChat",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "MalVerify", dependencies: ["MalCore", "MalTransforms", "MalRuntime", "CMalKernels"]),
        .executableTarget(
            name: "malconv",
            dependencies: [
                "MalCore", "MalArchitectures", "MalReaders", "MalTransforms", "MalWriters", "MalVerify", "MalRuntime", "MalCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "malrun",
            dependencies: [
                "MalCore", "MalReaders", "MalRuntime", "MalWriters", "MalChat", "MalServe", "MalCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "malbench", dependencies: ["MalCore", "MalArchitectures", "MalReaders", "MalRuntime", "MalTransforms", "MalWriters"],
            path: "Benchmarks/MalBench"),
        .target(name: "MalTestSupport", path: "Tests/MalTestSupport"),
        .testTarget(
            name: "MalRuntimeTests",
            dependencies: ["MalTestSupport", "CMalKernels", "MalCore", "MalArchitectures", "MalReaders", "MalRuntime", "MalTransforms", "MalWriters"]),
        .testTarget(name: "MalReadersTests", dependencies: ["MalTestSupport", "MalCore", "MalReaders"]),
        .testTarget(
            name: "MalQuantTests",
            dependencies: ["MalTestSupport", "MalCore", "MalArchitectures", "MalReaders", "MalTransforms", "MalWriters", "MalVerify", "MalRuntime"]),
        .testTarget(name: "MalChatTests", dependencies: ["MalTestSupport", "MalCore", "MalChat", "MalRuntime"]),
        .testTarget(name: "MalContainerTests", dependencies: ["MalTestSupport", "MalCore", "MalArchitectures", "MalReaders", "MalTransforms", "MalWriters"]),
    ]
)

/// libFuzzer targets for every parser of untrusted bytes (`Fuzz/`, `Docs/SECURITY.md`). They have no
/// `main` (libFuzzer's runs), so they exist only when `MAL_FUZZ` is set, as `Fuzz/run.sh` (`make
/// fuzz`) does with its own scratch folder and `--sanitize=fuzzer --sanitize=address`; being in this
/// package, every library they call is instrumented for coverage too.
if ProcessInfo.processInfo.environment["MAL_FUZZ"] != nil {
    package.targets.append(
        .target(
            name: "FuzzTargets", dependencies: ["MalCore", "MalReaders", "MalRuntime"],
            path: "Fuzz/Sources/FuzzTargets"))
    for name in ["safetensors", "index", "config", "tokenizer-json", "tokenizer-config", "mal"] {
        package.targets.append(.executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzTargets"], path: "Fuzz/Sources/fuzz-\(name)"))
    }
}
