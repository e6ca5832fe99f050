"""efence: edge gate and electronic-fence controller for the customs checkpoints of the Shanghai FTZ."""

__version__ = "0.1.0"
