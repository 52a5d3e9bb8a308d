"""Animation: Deforum-style keyframe schedules and 2D warps (torch-free, so the chat side checks a
schedule before anything is queued); AnimateDiff clips and video encoding come next (issue 18).
May import `generation.errors`, and nothing else of the engine."""
