import MalCore
import MalRuntime
import MalTestSupport
import Testing

/// The memory plan predicts what the runtime allocates, and says what fits.
@Suite("Memory plan") struct MemoryPlanTests {
    @Test("KV bytes per token as the runtime allocates them", arguments: Fixtures.models)
    func kvMatchesRuntime(name: String) throws {
        let model = try ModelLoader.open(Fixtures.model(name))
        for mtp in model.spec.mtpLayers > 0 ? [false, true] : [false] {
            let plan = MemoryPlan(model: model, mtp: mtp)
            let tr = try Transformer(model: model, contextLength: 64, threads: 1, mtp: mtp)
            #expect(
                plan.kvBytesPerToken == tr.kvCacheBytesPerToken + (mtp ? tr.kvCacheBytesPerToken / model.spec.layers : 0),
                "\(name) mtp \(mtp)")
            #expect(plan.weightBytes > 0 && plan.largestTensorBytes <= plan.weightBytes)
        }
    }

    @Test("what fits: the longest context, and nothing when the weights alone do not")
    func fits() throws {
        let model = try ModelLoader.open(Fixtures.model("llama3-tiny"))
        let roomy = MemoryPlan(model: model, memoryBytes: 1 << 40)
        #expect(roomy.maxContext == model.spec.maxPositions)
        let memory = roomy.loadPeakBytes + 100 * roomy.kvBytesPerToken
        let tight = MemoryPlan(model: model, memoryBytes: memory)
        let k = try #require(tight.maxContext)
        #expect(tight.fits(context: k) && !tight.fits(context: k + 1))
        #expect(k == (memory - tight.weightBytes) / tight.kvBytesPerToken)
        #expect(MemoryPlan(model: model, memoryBytes: roomy.loadPeakBytes - 1).maxContext == nil)
    }
}
