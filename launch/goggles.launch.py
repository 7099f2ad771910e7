"""Launch goggles_node on a camera topic.

    ros2 launch vr_goggles goggles.launch.py camera:=/camera/image_raw engine:=onnxruntime
    ros2 launch vr_goggles goggles.launch.py camera:=/cam/image_raw image_sim:=/cam/image_sim

Parameters come from ``config/goggles.yaml`` (``params_file``), then the arguments below.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

BOOL = ('true', 'false')


def generate_launch_description() -> LaunchDescription:
    """Arguments + the goggles node."""
    config = os.path.join(get_package_share_directory('vr_goggles'), 'config', 'goggles.yaml')
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument('camera', default_value='/camera/image_raw',
                              description='Camera image topic (sensor_msgs/Image); with '
                              'compressed_input the node reads <camera>/compressed'),
        DeclareLaunchArgument('image_sim', default_value='/image_sim',
                              description='Output topic; image_pipeline style, beside the '
                              'camera: image_sim:=/camera/image_sim'),
        DeclareLaunchArgument('model', default_value='goggles_vr_goggles',
                              description='Generator: shipped name or weights path'),
        DeclareLaunchArgument('engine', default_value='auto',
                              choices=['auto', 'tensorrt', 'torch', 'onnxruntime'],
                              description='Inference engine'),
        DeclareLaunchArgument('device', default_value='cpu', description='cpu | cuda[:N]'),
        DeclareLaunchArgument('precision', default_value='fp32',
                              choices=['fp32', 'fp16', 'bf16'], description='Precision'),
        DeclareLaunchArgument('compressed_input', default_value='false', choices=BOOL,
                              description='Subscribe to <camera>/compressed'),
        DeclareLaunchArgument('output_size', default_value='model',
                              description="image_sim size: model | input | WxH"),
        DeclareLaunchArgument('use_sim_time', default_value='false', choices=BOOL,
                              description='Use /clock (rosbag play --clock, simulators)'),
        DeclareLaunchArgument('params_file', default_value=config,
                              description='YAML with the goggles_node parameters'),
        DeclareLaunchArgument('namespace', default_value='', description='Node namespace'),
        DeclareLaunchArgument('log_level', default_value='info', description='Log level'),
        Node(
            package='vr_goggles', executable='goggles_node', name='goggles_node',
            namespace=arg('namespace'), output='screen',
            parameters=[arg('params_file'), {
                'model': arg('model'),
                'engine': arg('engine'),
                'device': arg('device'),
                'precision': arg('precision'),
                'output_size': arg('output_size'),
                'compressed_input': ParameterValue(arg('compressed_input'), value_type=bool),
                'use_sim_time': ParameterValue(arg('use_sim_time'), value_type=bool),
            }],
            remappings=[('image', arg('camera')), ('image_sim', arg('image_sim'))],
            arguments=['--ros-args', '--log-level', arg('log_level')],
        ),
    ])
