# syntax=docker/dockerfile:1
# Multi-stage: build a venv with the CPU build of torch, then copy it into a slim runtime image
# that runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir .

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 lethe
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    LETHE_HOME=/var/lib/lethe \
    PYTHONUNBUFFERED=1
RUN mkdir -p /var/lib/lethe && chown lethe:lethe /var/lib/lethe
# Fashion-MNIST (built-in source fashion-mnist): Debian's package installs its IDX files under
# /usr/share/datasets/fashion-mnist; Lethe checks their SHA-256 before use.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist=0.0~git20200523.55506a9-1 \
    && rm -rf /var/lib/apt/lists/*
# Numeric ids: resolvable whatever the host's passwd file says (hadolint DL3066).
USER 10001:10001
WORKDIR /home/lethe
EXPOSE 8000
# `lethe api` creates the data folders and migrates the database before it serves.
CMD ["lethe", "api", "--host", "0.0.0.0", "--port", "8000"]
