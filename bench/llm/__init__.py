"""An LLM-shaped benchmark: a simulated inference engine, a multi-tenant chat workload, and
servicepool's strategies side by side with vllm-router and nginx (see bench/llm/run.py)."""
