"""Machinery the selection methods share, none of it a method: greedy engines (:mod:`.greedy`), the τ-graph
(:mod:`.graph`, its faiss builds in :mod:`.faiss_backend`, its edge helpers and buffer in :mod:`.edges`), kNN search
(:mod:`.knn`), embedding geometry (:mod:`.geometry`), the confident-learning core
(:mod:`.confident_learning`) and per-example score functions (:mod:`.scores`). Nothing here registers a
method or imports one."""
