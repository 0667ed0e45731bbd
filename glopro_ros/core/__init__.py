"""ROS-free core: body model, Gaussian body states, frames, motion model, fusion, tracking.

Nothing in this package imports rclpy.
"""
