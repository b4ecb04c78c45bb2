"""Export a tuned run for other engines: a merged Hugging Face folder (transformers, vLLM, TGI), the PEFT adapter
(vLLM --enable-lora, PeftModel) or GGUF through llama.cpp's converter with an Ollama Modelfile.
:func:`annotune.export.pipeline.export_run` is the entry point; this ``__init__`` imports nothing heavy."""
