"""The engine: plan a sweep, run a job (train, evaluate, checkpoint) on a device, launch jobs
(local or Ray), and add targets to finished jobs. The only room that imports torch and the models."""
