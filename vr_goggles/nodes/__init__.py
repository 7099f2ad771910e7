"""ROS 2 nodes: thin rclpy shells over the ROS-free core.

``goggles_node`` (camera -> simulator-style image), ``policy_node`` (simulator-style image ->
``cmd_vel``) and ``sim_bridge`` (the simulator as a fake robot). Importing this package does
not import rclpy: only the node modules and ``vr_goggles.nodes.ros_common`` do, so the
library, its CLI and the ROS-free tests work on machines without ROS. The parameter
definitions live in the ROS-free ``vr_goggles.nodes.params``.
"""
