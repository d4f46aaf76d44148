"""A KServe custom model serving an ONNX file with onnxruntime on KServe's Python `ModelServer`: the
`kserve.Model` subclass a KServe user writes (KServe's own ONNX path is Triton, a C++ server).

    python kserve_model.py --model_name mlp --model_path mlp.onnx --http_port 8080 --grpc_port 8081

One onnxruntime thread and one uvicorn worker; the access log and per-request latency log are off, as
in the other servers measured.
"""

import argparse
import logging

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve import logging as kserve_logging
from kserve.utils.utils import generate_uuid


class OnnxModel(Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feed = {t.name: t.as_numpy() for t in payload.inputs}
        results = self.session.run(None, feed)
        outputs = [InferOutput(name=n, shape=list(r.shape), datatype="FP32", data=r)
                   for n, r in zip(self.output_names, results, strict=True)]
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=outputs)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    kserve_logging.configure_logging(args.log_config_file)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    model = OnnxModel(args.model_name, args.model_path)
    model.load()
    ModelServer(workers=1, enable_latency_logging=False).start([model])


if __name__ == "__main__":
    main()
