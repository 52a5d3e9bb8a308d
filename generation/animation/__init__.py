"""Animation, torch-free (the chat side checks a schedule or reads an upload before anything is
queued): Deforum-style keyframe schedules (`keyframes`), 2D warps and colour coherence (`warp`),
and clips as files (`video`: frames to an H.264 MP4 and a GIF, ping-pong loops, and uploaded
MP4/WebM/MOV/GIF videos probed and read back into frames with PyAV). AnimateDiff itself runs in
generation.jobs. May import `generation.errors`, and nothing else of the engine."""
