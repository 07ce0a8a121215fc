"""The benchmark's baseline: an API written the way the seed system works.

A FastAPI handler that runs open_clip (torch) per request on FastAPI's thread pool (so
concurrent requests run the model concurrently) and brute-forces numpy over every vector.

    python api_baseline.py VECTORS.npy MODEL      # prints "serving http://127.0.0.1:PORT"
"""

from __future__ import annotations

import io
import sys

import numpy as np
import open_clip
import torch
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from PIL import Image


def build(vectors_path: str, model_name: str) -> FastAPI:
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    vectors = np.load(vectors_path).astype(np.float32)
    app = FastAPI()

    def top(query: torch.Tensor, k: int) -> list[dict]:
        q = (query / query.norm(dim=-1, keepdim=True))[0].numpy()
        scores = vectors @ q
        best = np.argsort(-scores)[:k]
        return [{"id": int(i), "score": float(scores[i])} for i in best]

    @app.post("/search")
    def search(
        image: UploadFile | None = File(None),  # noqa: B008 - how FastAPI declares form fields
        text: str | None = Form(None),  # noqa: B008
        k: int = Form(10),  # noqa: B008
    ):
        with torch.no_grad():
            if image is not None:
                picture = Image.open(io.BytesIO(image.file.read())).convert("RGB")
                query = model.encode_image(preprocess(picture).unsqueeze(0))
            else:
                query = model.encode_text(tokenizer([text or ""]))
        return {"results": top(query, k)}

    return app


class _Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        port = self.servers[0].sockets[0].getsockname()[1]
        print(f"serving http://127.0.0.1:{port}/api/v1", flush=True)


if __name__ == "__main__":
    app = build(sys.argv[1], sys.argv[2])
    _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)).run()
