from django.db import migrations


def load_default_rubrics(apps, schema_editor):
    from portal.reading.rubrics import DEFAULT_RUBRICS, validate_rubric

    RubricSet = apps.get_model("reading", "RubricSet")
    RubricCriterion = apps.get_model("reading", "RubricCriterion")
    for spec in DEFAULT_RUBRICS:
        clean = validate_rubric(spec)
        rubric, created = RubricSet.objects.get_or_create(
            name=clean["name"], version=1,
            defaults={"cancer_type": clean["cancer_type"], "description": clean["description"]},
        )
        if not created:
            continue
        for order, crit in enumerate(clean["criteria"]):
            RubricCriterion.objects.create(rubric_set=rubric, order=order, **crit)


class Migration(migrations.Migration):
    dependencies = [("reading", "0001_initial")]
    operations = [migrations.RunPython(load_default_rubrics, migrations.RunPython.noop)]
