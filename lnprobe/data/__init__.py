"""Data: LLaVA-format records (`llava`: conversation JSON → tokens + label masks), chat templates
(`templates`), images (`images`), the synthetic shapes task (`synth`), easy-VQA in LLaVA format
(`easyvqa`), dataset manifests (`manifest`) and seeded subsets by kind (`subset`)."""
