/// File names of a Hugging Face model folder that both its reader and its writer need.
public enum HFFileNames {
    /// The shard index of a multi-file checkpoint.
    public static let shardIndex = "model.safetensors.index.json"
    /// The files beside the weights that travel with a model, into a container's `aux/` and back
    /// out on export (`chat_template.jinja` is where transformers ≥ 4.43 saves a chat template
    /// instead of `tokenizer_config.json`).
    public static let auxiliary = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "chat_template.jinja",
    ]
}
