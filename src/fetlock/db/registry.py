"""Import every domain's models so that ``Base.metadata`` contains every table.

Alembic's ``env.py`` and the schema drift test import this module.
"""

from fetlock.audit import models as audit_models
from fetlock.auth import models as auth_models
from fetlock.billing import models as billing_models
from fetlock.db import counters
from fetlock.imaging import models as imaging_models
from fetlock.imaging import study_models as imaging_study_models
from fetlock.jobs import models as jobs_models
from fetlock.practice import models as practice_models
from fetlock.reporting import models as reporting_models

__all__ = [
    "counters",
    "audit_models",
    "auth_models",
    "billing_models",
    "imaging_models",
    "imaging_study_models",
    "jobs_models",
    "practice_models",
    "reporting_models",
]
