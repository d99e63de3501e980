"""edgepad.runtime: face crops, inference, fail-closed decisions at frame rate.

The integrator API (docs/RUNTIME.md)::

    from edgepad.runtime import PipelineConfig, PolicyConfig, open_pipeline

    with open_pipeline("realsense://123456789", "model.onnx", rig="rig.yaml",
                       config=PipelineConfig(policy=PolicyConfig(k=3, n=5))) as pipe:
        pipe.on_event(lambda ev: ev.kind == "decided" and ev.verdict.value == "live" and open_door())
        for decision in pipe.decisions():   # per-frame stream; presentation events: pipe.events() / on_event
            ...

Importing it needs numpy only; the backend (ONNX Runtime, TensorRT, torch) and the camera drivers are imported
when a pipeline is opened.
"""
from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig, open_pipeline
from edgepad.runtime.policy import DecisionPolicy, PolicyConfig
from edgepad.runtime.presentation import PresentationConfig, PresentationEvent

__all__ = ["DecisionPolicy", "LivenessPipeline", "PipelineConfig", "PolicyConfig", "PresentationConfig",
           "PresentationEvent", "open_pipeline"]
