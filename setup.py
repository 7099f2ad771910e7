"""ament_python package that also installs with plain pip on a machine without ROS."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'vr_goggles'
#: colcon's --symlink-install runs this file from build/vr_goggles/, where only the package,
#: setup.py, setup.cfg and the data files are linked: read the README beside this file.
HERE = os.path.dirname(os.path.realpath(__file__))

setup(
    name=PACKAGE,
    version='0.1.0',
    description='VR-Goggles: real-to-sim image translation for sim-trained robot policies',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.10',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={
        PACKAGE: ['weights/*.safetensors', 'weights/*.json', 'weights/*.onnx'],
        'sim_training': ['assets/real_textures/*'],
    },
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
    ],
    # The robot runtime: ONNX Runtime runs the shipped goggles and policy from their ONNX files
    # (vr_goggles/weights/NAME.onnx) without torch. torch is the 'torch' extra: the torch and
    # TensorRT engines, ONNX export, the floor prior's segmenter, training ('train' has it).
    install_requires=[
        'setuptools',
        'numpy>=1.21',
        'safetensors>=0.4',
        'onnx>=1.15',
        'onnxruntime>=1.17',
        'opencv-python-headless>=4.8',
        'rosbags>=0.10',
        'tqdm>=4.60',
        'matplotlib>=3.5',
        'PyYAML>=5.4',
    ],
    extras_require={
        # torch / TensorRT engines, `vr-goggles export`, floor prior, auto's timing of torch.
        'torch': ['torch==2.13.0'],
        # Simulator, policy and translator training (not needed on the robot).
        'train': [
            'torch==2.13.0',
            'gymnasium>=1.0',
            'miniworld>=2.1',
            'stable-baselines3>=2.3',
            'tensorboard>=2.14',
        ],
        'test': [
            'pytest>=7',
            'pytest-timeout>=2',
            'hypothesis>=6',
            'ruff>=0.4',
            'flake8>=6',
            'pydocstyle>=6',
            'import-linter>=2',  # the architecture contracts (pyproject.toml)
        ],
    },
    zip_safe=True,
    maintainer='vr_goggles maintainers',
    maintainer_email='maintainers@vr-goggles.dev',
    entry_points={
        'console_scripts': [
            'vr-goggles = vr_goggles.cli:main',
            'goggles_node = vr_goggles.nodes.goggles_node:main',
            'policy_node = vr_goggles.nodes.policy_node:main',
            'sim_bridge = vr_goggles.nodes.sim_bridge:main',
        ],
    },
)
