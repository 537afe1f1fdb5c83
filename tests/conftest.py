import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Small LAPACK calls are far slower with several BLAS threads on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
